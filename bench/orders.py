"""Order-creation throughput over HTTP, as a ratio of the database's own baseline.

For each database (SQLite, PostgreSQL) this script:

1. creates a fresh database (a temporary SQLite file, or `kassa_bench_<random>` on the
   PostgreSQL server), migrates it, and adds an API key and a few unlimited-stock products;
2. measures the *baseline*: N threads running a bare insert-and-commit loop (one INSERT of
   one row into a scratch table, then COMMIT) through the same driver kassa uses (sqlite3
   in WAL mode with a busy timeout; psycopg), M inserts in all;
3. starts kassa under uvicorn (W worker processes, loopback only) and has N client threads,
   each with its own `httpx.Client`, POST M orders to /v1/orders; it counts the 201s and
   everything else and records each request's latency;
4. prints orders/s, latency p50/p99, baseline inserts/s and the ratio of the two, writes the
   figures to `bench/results/orders-<timestamp>.json`, and removes everything it created.

Why a ratio: absolute figures say more about the machine (CPU, disk, fsync, noisy
neighbours) than about kassa. The baseline runs in the same process, against the same kind
of database, at the same concurrency, a few seconds apart, so "orders/s ÷ inserts/s" --
the fraction of the database's raw commit rate that survives the whole stack (HTTP,
validation, auth lookup, pricing, several rows per order, audit) -- is comparable between
runs and machines where the raw numbers are not. The clients run in this process too, so
on a small machine they compete with the server for CPU; that is part of what is measured
and is the same in every run.

Each phase is preceded by a short unmeasured warm-up (connections, pools, caches). Every
loop is bounded both by count and by `--time-limit`; a phase cut short by the time limit
is reported as such.

    .venv/bin/python bench/orders.py [--clients 8] [--orders 2000] [--workers 2]
                                     [--databases sqlite,postgresql] [--quick]
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
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy.engine import make_url

from kassa.config import Settings
from kassa.services.catalogue import NewProduct
from kassa.services.context import RequestContext
from kassa.services.kassa import Kassa
from kassa.storage.database import SQLITE_BUSY_TIMEOUT_MS
from kassa.storage.migrate import upgrade

DATABASES = ("sqlite", "postgresql")
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
HOST = "127.0.0.1"
CURRENCY = "EUR"
# Unlimited stock (None), so no order is ever refused for want of stock.
PRODUCTS = (
    NewProduct("BENCH-MUG", "Bench mug", 1250, CURRENCY, stock=None),
    NewProduct("BENCH-TEE", "Bench tee", 2400, CURRENCY, stock=None),
    NewProduct("BENCH-CAP", "Bench cap", 1800, CURRENCY, stock=None),
    NewProduct("BENCH-PIN", "Bench pin", 300, CURRENCY, stock=None),
)
BASELINE_PAYLOAD = json.dumps({"email": "bench@example.com", "sku": "BENCH-MUG", "quantity": 1})
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
    orders: int
    workers: int
    databases: tuple[str, ...]
    time_limit_s: float
    warmup: int
    postgres_url: str


def parse_args(argv: list[str] | None = None) -> Params:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument(
        "--orders", type=int, default=None, help="orders per database (default 2000; 200 quick)"
    )
    parser.add_argument(
        "--databases",
        default=",".join(DATABASES),
        help="comma-separated: sqlite,postgresql (default both)",
    )
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers (default 2)")
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
    orders = args.orders if args.orders is not None else (200 if args.quick else 2000)
    time_limit = args.time_limit if args.time_limit is not None else (60 if args.quick else 300)
    if args.clients < 1 or orders < 1 or args.workers < 1 or time_limit <= 0:
        parser.error("--clients, --orders, --workers and --time-limit must be positive")
    return Params(
        clients=args.clients,
        orders=orders,
        workers=args.workers,
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


def measure(factory: OpFactory, params: Params) -> tuple[int, LoadResult]:
    """An unmeasured warm-up, then the measured run; returns the warm-up's successes too."""
    warmup = run_load(factory, params.clients, params.warmup, params.time_limit_s)
    return warmup.succeeded, run_load(factory, params.clients, params.orders, params.time_limit_s)


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


def prepare(target: Target) -> str:
    """Migrate, add the scratch table, products and an API key; return the key's secret."""
    upgrade(target.url)
    create_baseline_table(target)
    kassa = Kassa(Settings(database_url=target.url))
    try:
        ctx = RequestContext.system("bench")
        _view, secret = kassa.api_keys.create(ctx, "ops", "bench")
        for product in PRODUCTS:
            kassa.catalogue.create(ctx, product)
    finally:
        kassa.close()
    return secret


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


def baseline_factory(target: Target) -> OpFactory:
    path = target.sqlite_path
    if path is not None:
        return lambda: sqlite_inserter(path)
    return lambda: postgres_inserter(target.url)


# --------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (manager and workers), SIGKILL if it lingers."""
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


def _tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


@contextmanager
def kassa_server(url: str, workers: int, log: Path) -> Iterator[str]:
    """kassa under uvicorn on a free loopback port; yields its base URL."""
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
    env = {**os.environ, "KASSA_DATABASE_URL": url}
    with log.open("wb") as out:
        # A session of its own: Ctrl-C reaches only us, and we stop the whole group.
        proc = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        base_url = f"http://{HOST}:{port}"
        _wait_healthy(proc, base_url, log)
        yield base_url
    finally:
        _stop(proc)


# --------------------------------------------------------------------------- HTTP load


def order_body(sku: str) -> dict[str, Any]:
    return {
        "email": "bench@example.com",
        "currency": CURRENCY,
        "lines": [{"sku": sku, "quantity": 1}],
    }


@contextmanager
def order_client(base_url: str, secret: str) -> Iterator[Op]:
    headers = {"Authorization": f"Bearer {secret}"}
    skus = [p.sku for p in PRODUCTS]
    sent = 0
    with httpx.Client(
        base_url=base_url, headers=headers, timeout=REQUEST_TIMEOUT_S, trust_env=False
    ) as client:

        def create_order() -> str | None:
            nonlocal sent
            sku = skus[sent % len(skus)]
            sent += 1
            response = client.post("/v1/orders", json=order_body(sku))
            if response.status_code == 201:
                return None
            return f"HTTP {response.status_code}: {response.text[:200]}"

        yield create_order


# --------------------------------------------------------------------------- one database


@dataclass(frozen=True)
class DatabaseResult:
    database: str
    orders: LoadResult
    baseline: LoadResult
    # Successes (warm-up + measured) against the rows found afterwards, per table.
    stored: dict[str, tuple[int, int]]

    @property
    def ratio(self) -> float:
        base = self.baseline.per_second
        return self.orders.per_second / base if base > 0 else float("nan")

    def summary(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "orders": self.orders.summary(),
            "baseline": self.baseline.summary(),
            "ratio": round(self.ratio, 4),
            "stored": {t: {"expected": e, "found": f} for t, (e, f) in self.stored.items()},
        }

    def stored_mismatches(self) -> list[str]:
        return [f"{t}: {e} expected, {f} found" for t, (e, f) in self.stored.items() if e != f]


def bench_database(kind: str, params: Params, workdir: Path) -> DatabaseResult:
    with ExitStack() as stack:
        if kind == "sqlite":
            target = stack.enter_context(sqlite_database(workdir))
        else:
            target = stack.enter_context(postgres_database(params.postgres_url))
        secret = prepare(target)
        print(f"[{kind}] baseline: {params.orders} insert-and-commit, {params.clients} threads")
        baseline_warmup, baseline = measure(baseline_factory(target), params)
        print(f"[{kind}] orders: {params.orders} POST /v1/orders, {params.clients} clients")
        base_url = stack.enter_context(
            kassa_server(target.url, params.workers, workdir / f"server-{kind}.log")
        )
        orders_warmup, orders = measure(lambda: order_client(base_url, secret), params)
        stored = {
            "orders": (orders_warmup + orders.succeeded, count_rows(target, "orders")),
            "bench_baseline": (
                baseline_warmup + baseline.succeeded,
                count_rows(target, "bench_baseline"),
            ),
        }
        return DatabaseResult(kind, orders, baseline, stored)


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
        f"kassa order creation over HTTP: {params.clients} clients, {params.orders} orders per "
        f"database, {params.workers} uvicorn workers; nproc {host['nproc']}, "
        f"Python {host['python']}"
    )
    columns = (
        f"{'database':<12}{'orders/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'failed':>8}"
        f"{'baseline ins/s':>16}{'ratio':>8}"
    )
    rows = [header, "", columns, "-" * len(columns)]
    for r in results:
        rows.append(
            f"{r.database:<12}{r.orders.per_second:>10.1f}{r.orders.percentile_ms(50):>9.1f}"
            f"{r.orders.percentile_ms(99):>9.1f}{r.orders.failed:>8}"
            f"{r.baseline.per_second:>16.1f}{r.ratio:>8.3f}"
        )
    rows.append("")
    rows.append("ratio = orders/s / baseline inserts/s (bare INSERT + COMMIT, same concurrency)")
    for r in results:
        for label, load in (("orders", r.orders), ("baseline", r.baseline)):
            if load.timed_out:
                rows.append(f"WARNING {r.database} {label}: stopped by the time limit")
            if load.failed:
                rows.append(f"WARNING {r.database} {label}: {load.failed} failed, e.g.:")
                rows.extend(f"  {e}" for e in load.errors)
        rows.extend(f"WARNING {r.database} rows stored: {m}" for m in r.stored_mismatches())
    return "\n".join(rows)


def write_json(params: Params, host: dict[str, Any], results: list[DatabaseResult]) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"orders-{stamp}.json"
    document = {
        "benchmark": "orders",
        "timestamp": stamp,
        "params": {k: v for k, v in asdict(params).items() if k != "postgres_url"},
        "machine": host,
        "results": [r.summary() for r in results],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through every `finally`: server, database, files


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
    clean = all(
        not (load.failed or load.timed_out or r.stored_mismatches())
        for r in results
        for load in (r.orders, r.baseline)
    )
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
