"""Signed webhook events: acknowledge rate and end-to-end effect rate, as ratios of the
database's own baseline.

A provider event reaches kassa in two steps. The *acknowledgement* is the fast path a
provider waits on: `POST /v1/webhooks/{provider}` checks the Stripe-Signature header,
stores the event once and enqueues its `provider_event.apply` job, all in one write
transaction, and answers 200. The *effect* comes later: a background worker claims the
job and applies the event (here `payment_intent.succeeded`: payment succeeded, order
paid) in the job's own transaction. Both rates matter: the first says how fast kassa can
take a burst of deliveries off a provider's hands, the second how fast the backlog turns
into paid orders.

For each database (SQLite, PostgreSQL) this script:

1. creates a fresh database (a temporary SQLite file, or `kassa_bench_<random>` on the
   PostgreSQL server), migrates it and adds an unlimited-stock product;
2. measures the *baseline*: C threads running a bare insert-and-commit loop (one INSERT of
   one row into a scratch table, then COMMIT) through the same driver kassa uses (sqlite3
   in WAL mode with a busy timeout; psycopg), N inserts in all;
3. prepares N orders, each with a browser-flow mock payment (`requires_action`, with a
   provider intent id), through the service layer directly;
4. starts kassa under uvicorn (W worker processes, loopback only, no embedded job worker
   and no KASSA_MOCK_WEBHOOK_URL, so jobs only queue) and has C client threads, each with
   its own `httpx.Client`, POST N distinct `payment_intent.succeeded` events to
   /v1/webhooks/mock, each signed just before it is sent; every answer must be 200 with
   `duplicate: false`. This gives acks/s and the latency p50/p99;
5. starts P `kassa worker` processes and times from their start until every
   `provider_event.apply` job is `done` (polling the `jobs` table): effects/s = N / that
   time. That time includes the workers' start-up (imports, connections); "steady/s" is
   the rate between the first and the last job finishing, without it;
6. verifies that every order is `paid`, every payment `succeeded`, every event applied
   and every job done, and that each acknowledged event was stored exactly once;
7. prints the figures, writes them to `bench/results/webhooks-<timestamp>.json`, removes
   everything it created, and exits non-zero if anything failed or did not match.

With `--workers-procs 1,2` step 4-5 is repeated (a fresh batch of N payments each time)
for each number of worker processes.

Why ratios: absolute figures say more about the machine (CPU, disk, fsync, noisy
neighbours) than about kassa. The baseline runs in the same process, against the same kind
of database, at the same concurrency, a few seconds apart, so "acks/s / inserts/s" and
"effects/s / inserts/s" -- the fraction of the database's raw commit rate that survives
the whole stack -- are comparable between runs and machines where the raw numbers are
not. The clients run in this process too, so on a small machine they compete with the
server for CPU; that is part of what is measured and is the same in every run.

The acknowledge phase is preceded by an unmeasured warm-up (2 x C extra payments and
events, applied in-process before the measured run), the baseline by a warm-up too. Every
loop is bounded both by count and by `--time-limit`; a phase cut short by the time limit
is reported as such.

    .venv/bin/python bench/webhooks.py [--clients 8] [--events 2000] [--workers 2]
                                       [--workers-procs 1] [--databases sqlite,postgresql]
                                       [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from kassa.config import Settings
from kassa.domain import signatures
from kassa.domain.orders import LineRequest
from kassa.services.catalogue import NewProduct
from kassa.services.context import RequestContext
from kassa.services.kassa import Kassa
from kassa.services.orders import NewOrder
from kassa.services.webhooks import APPLY_EVENT
from kassa.storage.database import SQLITE_BUSY_TIMEOUT_MS
from kassa.storage.migrate import upgrade
from kassa.storage.tables import Job, Order, Payment, ProviderEvent
from kassa.worker import Worker

DATABASES = ("sqlite", "postgresql")
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
HOST = "127.0.0.1"
PROVIDER = "mock"
# The mock's default webhook secret; the server and workers are started with it explicitly,
# so an ambient KASSA_MOCK_WEBHOOK_SECRET cannot make every delivery a 400.
WEBHOOK_SECRET = "whsec_kassa_mock_sandbox"
CURRENCY = "EUR"
AMOUNT = 1000
# Unlimited stock (None), so no order is ever refused, or short, for want of stock.
PRODUCT = NewProduct("BENCH", "Bench", AMOUNT, CURRENCY, stock=None)
EMAIL = "bench@example.com"
BASELINE_PAYLOAD = json.dumps({"email": EMAIL, "sku": PRODUCT.sku, "quantity": 1})
WORKER_POLL_S = 0.05
JOB_POLL_S = 0.02
REQUEST_TIMEOUT_S = 30.0
SERVER_START_TIMEOUT_S = 60.0
SERVER_STOP_TIMEOUT_S = 15.0
MAX_ERROR_SAMPLES = 5

# One unit of work: returns None on success, else a short description of what went wrong.
Op = Callable[[], str | None]
OpFactory = Callable[[], AbstractContextManager[Op]]


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class Params:
    clients: int
    events: int
    workers: int
    worker_procs: tuple[int, ...]
    databases: tuple[str, ...]
    time_limit_s: float
    warmup: int
    postgres_url: str


def _positive_ints(raw: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in raw.split(",") if v.strip())
    except ValueError:
        return ()
    return values if values and all(v > 0 for v in values) else ()


def parse_args(argv: list[str] | None = None) -> Params:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument(
        "--events", type=int, default=None, help="events per database (default 2000; 300 quick)"
    )
    parser.add_argument(
        "--databases",
        default=",".join(DATABASES),
        help="comma-separated: sqlite,postgresql (default both)",
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="uvicorn worker processes (default 2)"
    )
    parser.add_argument(
        "--workers-procs",
        default="1",
        help="`kassa worker` processes applying the events; a comma-separated list runs one "
        "round per entry, each with N fresh events (default 1)",
    )
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help="seconds allowed per measured phase (default 300; 60 quick)",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("KASSA_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="admin URL used to create and drop the scratch PostgreSQL database",
    )
    args = parser.parse_args(argv)
    databases = tuple(d.strip() for d in args.databases.split(",") if d.strip())
    unknown = sorted(set(databases) - set(DATABASES))
    if unknown or not databases:
        parser.error(f"--databases takes {', '.join(DATABASES)}; got {args.databases!r}")
    worker_procs = _positive_ints(args.workers_procs)
    if not worker_procs:
        parser.error(f"--workers-procs takes positive integers; got {args.workers_procs!r}")
    events = args.events if args.events is not None else (300 if args.quick else 2000)
    time_limit = args.time_limit if args.time_limit is not None else (60 if args.quick else 300)
    if args.clients < 1 or events < 1 or args.workers < 1 or time_limit <= 0:
        parser.error("--clients, --events, --workers and --time-limit must be positive")
    return Params(
        clients=args.clients,
        events=events,
        workers=args.workers,
        worker_procs=worker_procs,
        databases=databases,
        time_limit_s=time_limit,
        warmup=2 * args.clients,
        postgres_url=args.postgres_url,
    )


# --------------------------------------------------------------------------- load runner


@dataclass
class LoadResult:
    """What one measured phase did: successes, failures, wall time, latencies."""

    succeeded: int
    failed: int
    wall_s: float
    latencies_ms: list[float] = field(repr=False)
    errors: list[str]
    timed_out: bool

    @property
    def per_second(self) -> float:
        return self.succeeded / self.wall_s if self.wall_s > 0 else 0.0

    def percentile_ms(self, pct: int) -> float:
        """Nearest-rank percentile of the successful operations' latencies."""
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        rank = max(1, -(-pct * len(ordered) // 100))  # ceil(pct/100 * n)
        return ordered[rank - 1]

    def summary(self) -> dict[str, Any]:
        return {
            "succeeded": self.succeeded,
            "failed": self.failed,
            "wall_s": round(self.wall_s, 3),
            "per_second": round(self.per_second, 1),
            "p50_ms": round(self.percentile_ms(50), 2),
            "p99_ms": round(self.percentile_ms(99), 2),
            "timed_out": self.timed_out,
            "error_samples": self.errors,
        }


class Tickets:
    """Hands out at most `total` units of work, and none once the deadline has passed."""

    def __init__(self, total: int) -> None:
        self._left = total
        self._deadline = float("inf")
        self._lock = threading.Lock()
        self.timed_out = False

    def start(self, time_limit_s: float) -> None:
        self._deadline = time.monotonic() + time_limit_s

    def take(self) -> bool:
        with self._lock:
            if self._left <= 0:
                return False
            if time.monotonic() > self._deadline:
                self.timed_out = True
                return False
            self._left -= 1
            return True


@dataclass
class _ThreadLog:
    latencies_ms: list[float] = field(default_factory=list)
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    crash: BaseException | None = None


def _work(factory: OpFactory, tickets: Tickets, start: threading.Barrier, log: _ThreadLog) -> None:
    try:
        with factory() as op:
            start.wait()
            while tickets.take():
                began = time.perf_counter()
                try:
                    problem = op()
                except Exception as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                elapsed_ms = (time.perf_counter() - began) * 1000
                if problem is None:
                    log.latencies_ms.append(elapsed_ms)
                else:
                    log.failed += 1
                    if len(log.errors) < MAX_ERROR_SAMPLES:
                        log.errors.append(problem)
    except BaseException as exc:
        log.crash = exc
        start.abort()


def run_load(factory: OpFactory, clients: int, total: int, time_limit_s: float) -> LoadResult:
    """Run `total` ops over `clients` threads, each with its own `factory()` resource.

    The clock starts once every thread has its connection open, and stops when the last
    thread has finished.
    """
    tickets = Tickets(total)
    start = threading.Barrier(clients + 1)
    logs = [_ThreadLog() for _ in range(clients)]
    threads = [
        threading.Thread(target=_work, args=(factory, tickets, start, log), daemon=True)
        for log in logs
    ]
    for thread in threads:
        thread.start()
    try:
        start.wait(timeout=SERVER_START_TIMEOUT_S)
    except threading.BrokenBarrierError:
        for thread in threads:
            thread.join(timeout=REQUEST_TIMEOUT_S)
        crash = next((log.crash for log in logs if log.crash is not None), None)
        raise RuntimeError(f"a client could not start: {crash!r}") from crash
    tickets.start(time_limit_s)
    began = time.perf_counter()
    join_by = time.monotonic() + time_limit_s + 2 * REQUEST_TIMEOUT_S
    for thread in threads:
        thread.join(timeout=max(0.0, join_by - time.monotonic()))
        if thread.is_alive():
            raise RuntimeError("a client thread did not finish in time")
    wall_s = time.perf_counter() - began
    crash = next((log.crash for log in logs if log.crash is not None), None)
    if crash is not None:
        raise RuntimeError(f"a client thread crashed: {crash!r}") from crash
    return LoadResult(
        succeeded=sum(len(log.latencies_ms) for log in logs),
        failed=sum(log.failed for log in logs),
        wall_s=wall_s,
        latencies_ms=[ms for log in logs for ms in log.latencies_ms],
        errors=[e for log in logs for e in log.errors][:MAX_ERROR_SAMPLES],
        timed_out=tickets.timed_out,
    )


# --------------------------------------------------------------------------- databases


@dataclass(frozen=True)
class Target:
    """A fresh, migrated database for one run."""

    kind: str
    url: str  # SQLAlchemy / KASSA_DATABASE_URL form
    sqlite_path: Path | None = None


@contextmanager
def sqlite_database(workdir: Path) -> Iterator[Target]:
    path = workdir / "kassa-bench.db"
    yield Target("sqlite", f"sqlite:///{path}", sqlite_path=path)
    # The file goes with `workdir`.


def _plain_postgres_url(url: str, database: str | None = None) -> str:
    """A libpq URL (what psycopg takes), optionally pointing at another database."""
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


@contextmanager
def postgres_database(admin_url: str) -> Iterator[Target]:
    name = f"kassa_bench_{secrets.token_hex(4)}"
    admin = _plain_postgres_url(admin_url)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield Target("postgresql", _plain_postgres_url(admin_url, name))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def prepare(target: Target, kassa: Kassa) -> None:
    """Migrate, add the scratch table and the product."""
    upgrade(target.url)
    create_baseline_table(target)
    kassa.catalogue.create(RequestContext.system("bench"), PRODUCT)


# --------------------------------------------------------------------------- baseline


def _open_sqlite(path: Path) -> sqlite3.Connection:
    """The same settings kassa applies to its own SQLite connections."""
    conn = sqlite3.connect(
        path, isolation_level=None, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000, check_same_thread=False
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def create_baseline_table(target: Target) -> None:
    if target.sqlite_path is not None:
        conn = _open_sqlite(target.sqlite_path)
        try:
            conn.execute("CREATE TABLE bench_baseline (id INTEGER PRIMARY KEY, payload TEXT)")
        finally:
            conn.close()
    else:
        with psycopg.connect(target.url, autocommit=True) as pg:
            pg.execute("CREATE TABLE bench_baseline (id BIGSERIAL PRIMARY KEY, payload TEXT)")


@contextmanager
def sqlite_inserter(path: Path) -> Iterator[Op]:
    conn = _open_sqlite(path)

    def insert() -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO bench_baseline (payload) VALUES (?)", (BASELINE_PAYLOAD,))
            conn.execute("COMMIT")
        except Exception:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    try:
        yield insert
    finally:
        conn.close()


@contextmanager
def postgres_inserter(url: str) -> Iterator[Op]:
    with psycopg.connect(url) as conn:

        def insert() -> None:
            try:
                conn.execute(
                    "INSERT INTO bench_baseline (payload) VALUES (%s)", (BASELINE_PAYLOAD,)
                )
                conn.commit()
            except Exception:
                conn.rollback()
                raise

        yield insert


def baseline_factory(target: Target) -> OpFactory:
    path = target.sqlite_path
    if path is not None:
        return lambda: sqlite_inserter(path)
    return lambda: postgres_inserter(target.url)


def count_rows(target: Target, table: str) -> int:
    """Rows in one of our own tables (a cross-check that every success was stored)."""
    query = f"SELECT count(*) FROM {table}"
    if target.sqlite_path is not None:
        conn = _open_sqlite(target.sqlite_path)
        try:
            count: int = conn.execute(query).fetchone()[0]
        finally:
            conn.close()
        return count
    with psycopg.connect(target.url) as pg:
        row = pg.execute(query).fetchone()
        return int(row[0]) if row else 0


# --------------------------------------------------------------------------- payments


@dataclass(frozen=True)
class BenchPayment:
    order_id: str
    payment_id: str
    intent_id: str


def _one_payment(kassa: Kassa) -> BenchPayment:
    ctx = RequestContext.system("bench")
    order = kassa.orders.create(ctx, NewOrder(CURRENCY, [LineRequest(PRODUCT.sku, 1)], email=EMAIL))
    payment = kassa.payments.pay(ctx, order.id, provider=PROVIDER)
    if payment.status != "requires_action" or payment.provider_payment_id is None:
        raise RuntimeError(f"a browser-flow payment came back {payment.status}: {payment.id}")
    return BenchPayment(order.id, payment.id, payment.provider_payment_id)


def create_payments(kassa: Kassa, count: int, threads: int) -> list[BenchPayment]:
    """`count` pending orders, each with a mock payment waiting for the browser."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(lambda _: _one_payment(kassa), range(count)))


def event_body(event_id: str, payment: BenchPayment) -> bytes:
    """A Stripe-shaped `payment_intent.succeeded` event for one payment."""
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": "payment_intent.succeeded",
            "data": {
                "object": {
                    "id": payment.intent_id,
                    "object": "payment_intent",
                    "amount": AMOUNT,
                    "currency": CURRENCY.lower(),
                    "metadata": {"kassa_payment": payment.payment_id},
                }
            },
        }
    ).encode()


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group (e.g. uvicorn's manager and workers), SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=SERVER_STOP_TIMEOUT_S)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def kassa_env(url: str) -> dict[str, str]:
    """The server's and workers' environment: this database, no mock event delivery."""
    env = {**os.environ, "KASSA_DATABASE_URL": url, "KASSA_MOCK_WEBHOOK_SECRET": WEBHOOK_SECRET}
    env.pop("KASSA_MOCK_WEBHOOK_URL", None)
    return env


@contextmanager
def _process(
    command: list[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        # A session of its own: Ctrl-C reaches only us, and we stop the whole group.
        proc = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield proc
    finally:
        _stop(proc)


def _wait_healthy(proc: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    with httpx.Client(base_url=base_url, timeout=2.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with {proc.returncode}:\n{_tail(log)}")
            try:
                if client.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    raise RuntimeError(f"the server was not healthy after {SERVER_START_TIMEOUT_S}s:\n{_tail(log)}")


@contextmanager
def kassa_server(url: str, workers: int, log: Path) -> Iterator[str]:
    """kassa under uvicorn on a free loopback port, no job worker; yields its base URL."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "kassa.api.app:create_app",
        "--factory",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
    ]
    with _process(command, kassa_env(url), log) as proc:
        base_url = f"http://{HOST}:{port}"
        _wait_healthy(proc, base_url, log)
        yield base_url


WORKER_COMMAND = [sys.executable, "-m", "kassa.cli", "worker", "--poll", str(WORKER_POLL_S)]


# --------------------------------------------------------------------------- acknowledge


class EventFeed:
    """The events still to send, each taken by exactly one client."""

    def __init__(self, bodies: list[bytes]) -> None:
        self._bodies = deque(bodies)

    def take(self) -> bytes | None:
        try:
            return self._bodies.popleft()  # atomic
        except IndexError:
            return None


@contextmanager
def webhook_client(base_url: str, feed: EventFeed) -> Iterator[Op]:
    with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT_S, trust_env=False) as client:

        def deliver() -> str | None:
            body = feed.take()
            if body is None:
                return "no event left to send"
            headers = {
                "Content-Type": "application/json",
                "Stripe-Signature": signatures.sign(body, WEBHOOK_SECRET, int(time.time())),
            }
            response = client.post(f"/v1/webhooks/{PROVIDER}", content=body, headers=headers)
            if response.status_code != 200:
                return f"HTTP {response.status_code}: {response.text[:200]}"
            answer = response.json()
            if answer != {"received": True, "duplicate": False}:
                return f"unexpected acknowledgement {answer!r}"
            return None

        yield deliver


def acknowledge(
    base_url: str, bodies: list[bytes], clients: int, time_limit_s: float
) -> LoadResult:
    feed = EventFeed(bodies)
    return run_load(lambda: webhook_client(base_url, feed), clients, len(bodies), time_limit_s)


# --------------------------------------------------------------------------- effects


@dataclass
class EffectResult:
    """How long P worker processes took to apply one batch of acknowledged events."""

    procs: int
    expected: int
    done: int
    dead: int
    wall_s: float
    # First and last job of the batch to finish, seconds after the workers were started.
    first_done_s: float | None
    last_done_s: float | None
    timed_out: bool
    problem: str | None

    @property
    def per_second(self) -> float:
        return self.done / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def steady_per_second(self) -> float:
        """The rate once the workers were up: first to last job finished."""
        if self.first_done_s is None or self.last_done_s is None or self.done < 2:
            return float("nan")
        span = self.last_done_s - self.first_done_s
        return (self.done - 1) / span if span > 0 else float("nan")

    def summary(self) -> dict[str, Any]:
        return {
            "procs": self.procs,
            "expected": self.expected,
            "done": self.done,
            "dead": self.dead,
            "wall_s": round(self.wall_s, 3),
            "per_second": round(self.per_second, 1),
            "first_done_s": None if self.first_done_s is None else round(self.first_done_s, 3),
            "last_done_s": None if self.last_done_s is None else round(self.last_done_s, 3),
            "steady_per_second": round(self.steady_per_second, 1),
            "timed_out": self.timed_out,
            "problem": self.problem,
        }


def _batch_states(kassa: Kassa, after_pk: int) -> dict[str, int]:
    with kassa.db.transaction(read_only=True) as s:
        rows = s.execute(
            select(Job.state, func.count())
            .where(Job.kind == APPLY_EVENT, Job.pk > after_pk)
            .group_by(Job.state)
        )
        return {str(state): int(n) for state, n in rows}


def _finish_span(kassa: Kassa, after_pk: int) -> tuple[datetime | None, datetime | None]:
    with kassa.db.transaction(read_only=True) as s:
        row = s.execute(
            select(func.min(Job.finished_at), func.max(Job.finished_at)).where(
                Job.kind == APPLY_EVENT, Job.pk > after_pk, Job.state == "done"
            )
        ).one()
        return row[0], row[1]


def apply_events(
    kassa: Kassa,
    target: Target,
    procs: int,
    after_pk: int,
    expected: int,
    params: Params,
    workdir: Path,
) -> EffectResult:
    """Start `procs` workers; time until every apply job after `after_pk` is done."""
    problem: str | None = None
    states: dict[str, int] = {}
    timed_out = False
    with ExitStack() as stack:
        started_at = datetime.now(UTC)
        began = time.perf_counter()
        workers = [
            stack.enter_context(
                _process(WORKER_COMMAND, kassa_env(target.url), workdir / f"worker-{n}.log")
            )
            for n in range(procs)
        ]
        deadline = time.monotonic() + params.time_limit_s
        while True:
            states = _batch_states(kassa, after_pk)
            if states.get("done", 0) + states.get("dead", 0) >= expected:
                break
            exited = [(n, w.returncode) for n, w in enumerate(workers) if w.poll() is not None]
            if exited:
                n, code = exited[0]
                problem = f"worker {n} exited with {code}:\n{_tail(workdir / f'worker-{n}.log')}"
                break
            if time.monotonic() > deadline:
                timed_out = True
                break
            time.sleep(JOB_POLL_S)
        wall_s = time.perf_counter() - began
    first, last = _finish_span(kassa, after_pk)
    return EffectResult(
        procs=procs,
        expected=expected,
        done=states.get("done", 0),
        dead=states.get("dead", 0),
        wall_s=wall_s,
        first_done_s=None if first is None else (first - started_at).total_seconds(),
        last_done_s=None if last is None else (last - started_at).total_seconds(),
        timed_out=timed_out,
        problem=problem,
    )


def last_job_pk(kassa: Kassa) -> int:
    with kassa.db.transaction(read_only=True) as s:
        return int(s.scalar(select(func.coalesce(func.max(Job.pk), 0))) or 0)


# --------------------------------------------------------------------------- verification


def _sample(ids: list[str]) -> str:
    more = f" (+{len(ids) - MAX_ERROR_SAMPLES} more)" if len(ids) > MAX_ERROR_SAMPLES else ""
    return ", ".join(ids[:MAX_ERROR_SAMPLES]) + more


def verify(kassa: Kassa, payments: list[BenchPayment], event_ids: list[str]) -> list[str]:
    """Every order paid in full, every payment succeeded, every event applied once."""
    problems: list[str] = []
    order_ids = {p.order_id for p in payments}
    payment_ids = {p.payment_id for p in payments}
    with kassa.db.transaction(read_only=True) as s:
        orders = {
            oid: (status, paid)
            for oid, status, paid in s.execute(select(Order.id, Order.status, Order.amount_paid))
        }
        pays = {pid: status for pid, status in s.execute(select(Payment.id, Payment.status))}
        events = {
            eid: (applied, outcome)
            for eid, applied, outcome in s.execute(
                select(ProviderEvent.event_id, ProviderEvent.applied_at, ProviderEvent.outcome)
            )
        }
        jobs = {
            (str(kind), str(state)): int(n)
            for kind, state, n in s.execute(
                select(Job.kind, Job.state, func.count()).group_by(Job.kind, Job.state)
            )
        }
    unpaid = sorted(
        f"{oid}={orders[oid][0]}/{orders[oid][1]}" if oid in orders else f"{oid}=missing"
        for oid in order_ids
        if orders.get(oid) != ("paid", AMOUNT)
    )
    if unpaid:
        problems.append(f"{len(unpaid)} order(s) not paid {AMOUNT}: {_sample(unpaid)}")
    failed = sorted(f"{pid}={pays.get(pid)}" for pid in payment_ids if pays.get(pid) != "succeeded")
    if failed:
        problems.append(f"{len(failed)} payment(s) not succeeded: {_sample(failed)}")
    unapplied = sorted(eid for eid in event_ids if eid not in events or events[eid][0] is None)
    if unapplied:
        problems.append(f"{len(unapplied)} event(s) not applied: {_sample(unapplied)}")
    odd = sorted(
        f"{eid}={events[eid][1]!r}"
        for eid in event_ids
        if eid in events and events[eid][0] is not None and events[eid][1] != "payment succeeded"
    )
    if odd:
        problems.append(f"{len(odd)} event(s) with another outcome: {_sample(odd)}")
    if len(events) != len(event_ids):
        problems.append(f"{len(events)} events stored, {len(event_ids)} sent")
    apply_done = jobs.get((APPLY_EVENT, "done"), 0)
    if apply_done != len(event_ids) or sum(jobs.values()) != apply_done:
        problems.append(f"jobs: {len(event_ids)} {APPLY_EVENT} done expected, found {jobs}")
    return problems


# --------------------------------------------------------------------------- one database


@dataclass(frozen=True)
class Round:
    procs: int
    prepare_s: float
    acks: LoadResult
    effects: EffectResult

    def summary(self, baseline: float) -> dict[str, Any]:
        return {
            "worker_procs": self.procs,
            "prepare_s": round(self.prepare_s, 3),
            "acks": self.acks.summary(),
            "effects": self.effects.summary(),
            "ack_ratio": round(_ratio(self.acks.per_second, baseline), 4),
            "effect_ratio": round(_ratio(self.effects.per_second, baseline), 4),
        }


def _ratio(value: float, base: float) -> float:
    return value / base if base > 0 else float("nan")


@dataclass(frozen=True)
class DatabaseResult:
    database: str
    baseline: LoadResult
    rounds: list[Round]
    # Successes (warm-up + measured) against the rows found afterwards, per table.
    stored: dict[str, tuple[int, int]]
    problems: list[str]

    def summary(self) -> dict[str, Any]:
        base = self.baseline.per_second
        return {
            "database": self.database,
            "baseline": self.baseline.summary(),
            "rounds": [r.summary(base) for r in self.rounds],
            "stored": {t: {"expected": e, "found": f} for t, (e, f) in self.stored.items()},
            "verification_problems": self.problems,
        }

    def mismatches(self) -> list[str]:
        stored = [f"{t}: {e} expected, {f} found" for t, (e, f) in self.stored.items() if e != f]
        return stored + self.problems


def bench_database(kind: str, params: Params, workdir: Path) -> DatabaseResult:
    with ExitStack() as stack:
        if kind == "sqlite":
            target = stack.enter_context(sqlite_database(workdir))
        else:
            target = stack.enter_context(postgres_database(params.postgres_url))
        kassa = Kassa(Settings(database_url=target.url))
        stack.callback(kassa.close)
        prepare(target, kassa)

        n, c = params.events, params.clients
        print(f"[{kind}] baseline: {n} insert-and-commit, {c} threads")
        factory = baseline_factory(target)
        baseline_warmup = run_load(factory, c, params.warmup, params.time_limit_s)
        baseline = run_load(factory, c, n, params.time_limit_s)

        print(f"[{kind}] warm-up: {params.warmup} payments, events and effects")
        base_url = stack.enter_context(
            kassa_server(target.url, params.workers, workdir / f"server-{kind}.log")
        )
        payments = create_payments(kassa, params.warmup, c)
        event_ids = [f"evt_bench_warmup_{i}" for i in range(len(payments))]
        bodies = [event_body(e, p) for e, p in zip(event_ids, payments, strict=True)]
        warmup = acknowledge(base_url, bodies, c, params.time_limit_s)
        Worker(kassa, name="bench-warmup").drain()
        acked = warmup.succeeded

        rounds: list[Round] = []
        for number, procs in enumerate(params.worker_procs):
            print(f"[{kind}] preparing {n} orders with browser-flow payments")
            began = time.perf_counter()
            batch = create_payments(kassa, n, c)
            prepare_s = time.perf_counter() - began
            ids = [f"evt_bench_{number * n + i}" for i in range(n)]
            bodies = [event_body(e, p) for e, p in zip(ids, batch, strict=True)]
            after_pk = last_job_pk(kassa)
            print(f"[{kind}] acknowledge: {n} signed events to /v1/webhooks/mock, {c} clients")
            acks = acknowledge(base_url, bodies, c, params.time_limit_s)
            acked += acks.succeeded
            print(f"[{kind}] effects: {procs} `kassa worker` process(es)")
            effects = apply_events(kassa, target, procs, after_pk, acks.succeeded, params, workdir)
            payments += batch
            event_ids += ids
            rounds.append(Round(procs, prepare_s, acks, effects))

        problems = verify(kassa, payments, event_ids)
        stored = {
            "provider_events": (acked, count_rows(target, "provider_events")),
            "bench_baseline": (
                baseline_warmup.succeeded + baseline.succeeded,
                count_rows(target, "bench_baseline"),
            ),
        }
        return DatabaseResult(kind, baseline, rounds, stored, problems)


# --------------------------------------------------------------------------- report


def machine() -> dict[str, Any]:
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:
        nproc = os.cpu_count() or 0
    return {
        "nproc": nproc,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def render(params: Params, host: dict[str, Any], results: list[DatabaseResult]) -> str:
    header = (
        f"kassa signed webhook events: {params.clients} clients, {params.events} events per "
        f"round, {params.workers} uvicorn workers; nproc {host['nproc']}, "
        f"Python {host['python']}"
    )
    columns = (
        f"{'database':<12}{'procs':>6}{'baseline ins/s':>16}{'acks/s':>9}{'ratio':>8}"
        f"{'effects/s':>11}{'ratio':>8}{'steady/s':>10}{'ack p50 ms':>12}{'ack p99 ms':>12}"
    )
    rows = [header, "", columns, "-" * len(columns)]
    for r in results:
        base = r.baseline.per_second
        for rnd in r.rounds:
            rows.append(
                f"{r.database:<12}{rnd.procs:>6}{base:>16.1f}{rnd.acks.per_second:>9.1f}"
                f"{_ratio(rnd.acks.per_second, base):>8.3f}{rnd.effects.per_second:>11.1f}"
                f"{_ratio(rnd.effects.per_second, base):>8.3f}"
                f"{rnd.effects.steady_per_second:>10.1f}"
                f"{rnd.acks.percentile_ms(50):>12.1f}{rnd.acks.percentile_ms(99):>12.1f}"
            )
    rows.append("")
    rows.append("baseline = bare INSERT + COMMIT, same driver and concurrency; ratio = rate / it")
    rows.append("effects/s from the workers' start (start-up included) to the last job done;")
    rows.append("steady/s from the first job done to the last")
    for r in results:
        loads = [("baseline", r.baseline)] + [
            (f"acks ({rnd.procs} procs)", rnd.acks) for rnd in r.rounds
        ]
        for label, load in loads:
            if load.timed_out:
                rows.append(f"WARNING {r.database} {label}: stopped by the time limit")
            if load.failed:
                rows.append(f"WARNING {r.database} {label}: {load.failed} failed, e.g.:")
                rows.extend(f"  {e}" for e in load.errors)
        for rnd in r.rounds:
            e = rnd.effects
            label = f"effects ({e.procs} procs)"
            if e.timed_out:
                rows.append(f"WARNING {r.database} {label}: stopped by the time limit")
            if e.problem:
                rows.append(f"WARNING {r.database} {label}: {e.problem}")
            if e.done != e.expected:
                rows.append(f"WARNING {r.database} {label}: {e.done}/{e.expected} done")
        rows.extend(f"MISMATCH {r.database}: {m}" for m in r.mismatches())
    return "\n".join(rows)


def write_json(params: Params, host: dict[str, Any], results: list[DatabaseResult]) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"webhooks-{stamp}.json"
    document = {
        "benchmark": "webhooks",
        "timestamp": stamp,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "params": {k: v for k, v in asdict(params).items() if k != "postgres_url"},
        "machine": host,
        "results": [r.summary() for r in results],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def clean(results: list[DatabaseResult]) -> bool:
    for r in results:
        if r.baseline.failed or r.baseline.timed_out or r.mismatches():
            return False
        for rnd in r.rounds:
            e = rnd.effects
            if rnd.acks.failed or rnd.acks.timed_out or e.timed_out or e.problem:
                return False
            if e.done != e.expected or e.dead:
                return False
    return True


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through every `finally`: processes, database


def main(argv: list[str] | None = None) -> int:
    params = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    host = machine()
    workdir = Path(tempfile.mkdtemp(prefix="kassa-bench-"))
    results: list[DatabaseResult] = []
    try:
        for kind in params.databases:
            results.append(bench_database(kind, params, workdir))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(render(params, host, results))
    print(f"\nresults written to {write_json(params, host, results)}")
    return 0 if clean(results) else 1


if __name__ == "__main__":
    sys.exit(main())
