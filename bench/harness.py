"""What the benchmarks in this folder share.

The command line (`BenchParser`), the scratch databases (`scratch_database`), the threaded
load runner (`run_load`), the database's own baseline (`measure_baseline`), kassa under
uvicorn (`kassa_server`), and a run from start to report (`run_benchmark`). Each script's
own docstring gives its methodology; what is described here is the same for all of them.

The scripts are run as `python bench/<name>.py`, which puts this folder first on
`sys.path`, so they import this module as `harness`.
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
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
import psycopg
from sqlalchemy.engine import make_url

from kassa.storage.database import SQLITE_BUSY_TIMEOUT_MS
from kassa.storage.migrate import upgrade

DATABASES = ("sqlite", "postgresql")
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
HOST = "127.0.0.1"
REQUEST_TIMEOUT_S = 30.0
SERVER_START_TIMEOUT_S = 60.0
SERVER_STOP_TIMEOUT_S = 15.0
MAX_ERROR_SAMPLES = 5
INTERRUPTED = 130  # the exit status after Ctrl-C, as a shell reports it
BASELINE_TABLE = "bench_baseline"

# One unit of work: returns None on success, else a short description of what went wrong.
Op = Callable[[], str | None]
OpFactory = Callable[[], AbstractContextManager[Op]]
# Per table: (successes, warm-up included; rows found afterwards).
Stored = dict[str, tuple[int, int]]

P = TypeVar("P")  # a benchmark's parameters (a dataclass)
T = TypeVar("T")  # what a benchmark's run found


# --------------------------------------------------------------------------- command line


def positive_ints(raw: str) -> tuple[int, ...]:
    """A comma-separated list of positive integers ("1,10,100"); () if it is not one."""
    try:
        values = tuple(int(v) for v in raw.split(",") if v.strip())
    except ValueError:
        return ()
    return values if values and all(v > 0 for v in values) else ()


class BenchParser(argparse.ArgumentParser):
    """A benchmark's command line. `--quick` picks smaller defaults for the options added
    with `add_sized`; `parse` fills them in and turns `--databases` into a tuple."""

    def __init__(self, description: str) -> None:
        super().__init__(description=description)
        self._sized: dict[str, tuple[float, float]] = {}
        self._has_databases = False

    def add_sized(
        self, flag: str, what: str, *, default: float, quick: float, kind: type = int
    ) -> None:
        """An option whose default is `default`, or `quick` with --quick."""
        action = self.add_argument(
            flag, type=kind, default=None, help=f"{what} (default {default}; {quick} quick)"
        )
        self._sized[action.dest] = (default, quick)

    def add_quick(self, what: str) -> None:
        self.add_argument("--quick", action="store_true", help=what)

    def add_databases(self) -> None:
        """`--databases`: a comma-separated selection of DATABASES, all by default."""
        self.add_argument(
            "--databases",
            default=",".join(DATABASES),
            help="comma-separated: sqlite,postgresql (default both)",
        )
        self._has_databases = True

    def add_postgres_url(self) -> None:
        self.add_argument(
            "--postgres-url",
            default=os.environ.get("KASSA_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
            help="admin URL used to create and drop the scratch PostgreSQL database",
        )

    def parse(self, argv: Sequence[str] | None = None) -> argparse.Namespace:
        args = self.parse_args(argv)
        if self._has_databases:
            raw = args.databases
            args.databases = tuple(d.strip() for d in raw.split(",") if d.strip())
            unknown = sorted(set(args.databases) - set(DATABASES))
            if unknown or not args.databases:
                self.error(f"--databases takes {', '.join(DATABASES)}; got {raw!r}")
        for dest, (default, quick) in self._sized.items():
            if getattr(args, dest) is None:
                setattr(args, dest, quick if args.quick else default)
        return args


def recorded_params(params: Any) -> dict[str, Any]:
    """A run's parameters (a dataclass) for the results file, less the PostgreSQL URL,
    which may hold a password."""
    return {k: v for k, v in asdict(params).items() if k != "postgres_url"}


# --------------------------------------------------------------------------- figures


def percentile(values: list[float], pct: int) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-pct * len(ordered) // 100))  # ceil(pct/100 * n)
    return ordered[rank - 1]


def ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


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
        return percentile(self.latencies_ms, pct)

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

    def warnings(self, database: str, label: str) -> list[str]:
        """Report lines for a phase cut short by the time limit or with failures."""
        lines = []
        if self.timed_out:
            lines.append(f"WARNING {database} {label}: stopped by the time limit")
        if self.failed:
            lines.append(f"WARNING {database} {label}: {self.failed} failed, e.g.:")
            lines.extend(f"  {e}" for e in self.errors)
        return lines


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
    thread has finished. The run is bounded both by count (`total`) and by `time_limit_s`;
    a run cut short by the time limit says so (`timed_out`).
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


def measure(
    factory: OpFactory, clients: int, warmup: int, total: int, time_limit_s: float
) -> tuple[int, LoadResult]:
    """A short unmeasured warm-up of `warmup` ops (connections, pools, caches), then the
    measured run; returns the warm-up's successes too."""
    warmed = run_load(factory, clients, warmup, time_limit_s)
    return warmed.succeeded, run_load(factory, clients, total, time_limit_s)


# --------------------------------------------------------------------------- scratch databases


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


def _open_sqlite(path: Path) -> sqlite3.Connection:
    """The same settings kassa applies to its own SQLite connections."""
    conn = sqlite3.connect(
        path, isolation_level=None, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000, check_same_thread=False
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


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


@contextmanager
def scratch_database(kind: str, workdir: Path, postgres_url: str) -> Iterator[Target]:
    """A fresh database, migrated to kassa's schema: a temporary SQLite file in `workdir`,
    or `kassa_bench_<random>` on the PostgreSQL server at `postgres_url` (dropped after)."""
    fresh = sqlite_database(workdir) if kind == "sqlite" else postgres_database(postgres_url)
    with fresh as target:
        upgrade(target.url)
        yield target


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


def stored_rows(target: Target, successes: dict[str, int]) -> Stored:
    """Per table: the successes reported for it beside the rows found there."""
    return {table: (n, count_rows(target, table)) for table, n in successes.items()}


def stored_summary(stored: Stored) -> dict[str, dict[str, int]]:
    return {t: {"expected": e, "found": f} for t, (e, f) in stored.items()}


def stored_mismatches(stored: Stored) -> list[str]:
    return [f"{t}: {e} expected, {f} found" for t, (e, f) in stored.items() if e != f]


# --------------------------------------------------------------------------- baseline


def create_baseline_table(target: Target) -> None:
    """The scratch table the baseline inserts into, beside kassa's own."""
    if target.sqlite_path is not None:
        conn = _open_sqlite(target.sqlite_path)
        try:
            conn.execute(f"CREATE TABLE {BASELINE_TABLE} (id INTEGER PRIMARY KEY, payload TEXT)")
        finally:
            conn.close()
    else:
        with psycopg.connect(target.url, autocommit=True) as pg:
            pg.execute(f"CREATE TABLE {BASELINE_TABLE} (id BIGSERIAL PRIMARY KEY, payload TEXT)")


@contextmanager
def sqlite_inserter(path: Path, payload: str) -> Iterator[Op]:
    conn = _open_sqlite(path)

    def insert() -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(f"INSERT INTO {BASELINE_TABLE} (payload) VALUES (?)", (payload,))
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
def postgres_inserter(url: str, payload: str) -> Iterator[Op]:
    with psycopg.connect(url) as conn:

        def insert() -> None:
            try:
                conn.execute(f"INSERT INTO {BASELINE_TABLE} (payload) VALUES (%s)", (payload,))
                conn.commit()
            except Exception:
                conn.rollback()
                raise

        yield insert


def baseline_factory(target: Target, payload: str) -> OpFactory:
    """Each thread's own connection, inserting `payload` as one row and committing."""
    path = target.sqlite_path
    if path is not None:
        return lambda: sqlite_inserter(path, payload)
    return lambda: postgres_inserter(target.url, payload)


def measure_baseline(
    target: Target, payload: str, clients: int, warmup: int, total: int, time_limit_s: float
) -> tuple[int, LoadResult]:
    """The database's own commit rate: `clients` threads running a bare insert-and-commit
    loop (one INSERT of one row into a scratch table, then COMMIT) through the same driver
    kassa uses (sqlite3 in WAL mode with a busy timeout; psycopg), `total` inserts in all,
    after a warm-up; returns the warm-up's successes too. Needs `create_baseline_table`.

    Why the benchmarks report ratios to it: absolute figures say more about the machine
    (CPU, disk, fsync, noisy neighbours) than about kassa. The baseline runs in the same
    process, against the same kind of database, at the same concurrency, a few seconds
    apart, so a rate divided by it -- the fraction of the database's raw commit rate that
    survives the whole stack -- is comparable between runs and machines where the raw
    numbers are not. The clients run in this process too, so on a small machine they
    compete with the server for CPU; that is part of what is measured and is the same in
    every run.
    """
    print(f"[{target.kind}] baseline: {total} insert-and-commit, {clients} threads")
    return measure(baseline_factory(target, payload), clients, warmup, total, time_limit_s)


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


def log_tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def database_env(url: str) -> dict[str, str]:
    """This process's environment, with kassa pointed at `url`."""
    return {**os.environ, "KASSA_DATABASE_URL": url}


@contextmanager
def background_process(
    command: list[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """`command` with its output in `log`, stopped (its whole process group) afterwards."""
    with log.open("wb") as out:
        # A session of its own: Ctrl-C reaches only us, and we stop the whole group.
        proc = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield proc
    finally:
        _stop(proc)


def http_client(
    base_url: str, *, headers: dict[str, str] | None = None, timeout: float = REQUEST_TIMEOUT_S
) -> httpx.Client:
    """A client for a server on loopback: never through a proxy from the environment."""
    return httpx.Client(base_url=base_url, headers=headers, timeout=timeout, trust_env=False)


def _wait_healthy(proc: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    with http_client(base_url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with {proc.returncode}:\n{log_tail(log)}")
            try:
                if client.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    raise RuntimeError(
        f"the server was not healthy after {SERVER_START_TIMEOUT_S}s:\n{log_tail(log)}"
    )


def clean_env(**kassa: str) -> dict[str, str]:
    """This process's environment without any ambient `KASSA_*` setting (a Stripe key, a
    webhook URL), plus `kassa` (e.g. KASSA_DATABASE_URL=...)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KASSA_")}
    return {**env, **kassa}


@dataclass(frozen=True)
class KassaLaunch:
    """How kassa is run: `workers` API processes, with the embedded background worker or
    not, beside `worker_procs` separate `kassa worker` processes. `log_level` None runs
    the server at its default, as a user runs it."""

    workers: int = 1
    embedded_worker: bool = True
    worker_procs: int = 0
    log_level: str | None = None

    def label(self) -> str:
        text = f"serve --workers {self.workers}"
        if not self.embedded_worker:
            text += " --no-worker"
        if self.worker_procs:
            text += f" + {self.worker_procs} kassa worker"
        return text


def serve_takes_workers() -> bool:
    """Whether this kassa's `kassa serve` has `--workers` (and so `--log-level`)."""
    import inspect

    from kassa import cli

    return "workers" in inspect.signature(cli.serve).parameters


KASSA_CLI = [sys.executable, "-m", "kassa.cli"]


def kassa_commands(launch: KassaLaunch, port: int) -> list[list[str]]:
    """The commands that run kassa as `launch` says: the server first, then each separate
    worker. The one place that decides how kassa is started.

    `kassa serve --workers N [--no-worker]` where this kassa has it. An older kassa served
    one process (`kassa serve`, its embedded worker in a thread); more processes than one
    it could only run under uvicorn's own command line, whose processes have no embedded
    worker, so there one `kassa worker` process stands in for it."""
    if serve_takes_workers():
        server = [*KASSA_CLI, "serve", "--host", HOST, "--port", str(port)]
        server += ["--workers", str(launch.workers)]
        server += [] if launch.embedded_worker else ["--no-worker"]
        server += ["--log-level", launch.log_level] if launch.log_level else []
        stand_in = 0
    elif launch.workers == 1:
        server = [*KASSA_CLI, "serve", "--host", HOST, "--port", str(port)]
        server += [] if launch.embedded_worker else ["--no-worker"]
        stand_in = 0
    else:
        server = [sys.executable, "-m", "uvicorn", "kassa.api.app:create_app", "--factory"]
        server += ["--host", HOST, "--port", str(port), "--workers", str(launch.workers)]
        server += ["--log-level", launch.log_level] if launch.log_level else []
        stand_in = 1 if launch.embedded_worker else 0
    workers = [[*KASSA_CLI, "worker"]] * (launch.worker_procs + stand_in)
    return [server, *workers]


def describe_commands(commands: list[list[str]]) -> str:
    """What `kassa_commands` chose, in a few words: "kassa serve --workers 2 --no-worker
    + 2 kassa worker", or "uvicorn --workers 2 + 1 kassa worker" on an older kassa."""
    server, *workers = commands
    if "serve" in server:
        words = ["kassa", *server[server.index("serve") :]]
    else:
        words = ["uvicorn", "--workers", server[server.index("--workers") + 1]]
    skip = {"--host", "--port", "--log-level"}
    kept = [w for i, w in enumerate(words) if w not in skip and words[i - 1] not in skip]
    return " ".join(kept) + (f" + {len(workers)} kassa worker" if workers else "")


@dataclass
class Running:
    """A started server (and its separate workers): its URL and processes. Each process
    leads a session of its own, so its session id (its pid) names it and its children."""

    base_url: str
    processes: list[subprocess.Popen[bytes]]

    @property
    def sessions(self) -> set[int]:
        return {p.pid for p in self.processes}

    @property
    def workers(self) -> list[subprocess.Popen[bytes]]:
        return self.processes[1:]


@contextmanager
def run_kassa(launch: KassaLaunch, env: dict[str, str], logs: Path) -> Iterator[Running]:
    """kassa on a free loopback port as `launch` says, its output in `logs`-<n>.log; yields
    once /healthz answers, and stops every process afterwards. The sandbox reports its
    events to this server (KASSA_MOCK_WEBHOOK_URL), whichever process delivers them."""
    port = free_port()
    base_url = f"http://{HOST}:{port}"
    env = {**env, "KASSA_MOCK_WEBHOOK_URL": f"{base_url}/v1/webhooks/mock"}
    with ExitStack() as stack:
        processes = [
            stack.enter_context(background_process(command, env, Path(f"{logs}-{n}.log")))
            for n, command in enumerate(kassa_commands(launch, port))
        ]
        _wait_healthy(processes[0], base_url, Path(f"{logs}-0.log"))
        yield Running(base_url, processes)


@contextmanager
def kassa_server(env: dict[str, str], workers: int, log: Path) -> Iterator[str]:
    """kassa (`workers` API processes, no background worker, so jobs only queue) on a free
    loopback port, with `env` (see `database_env`); yields its base URL once /healthz
    answers. Started through `kassa_commands`, as every benchmark starts kassa."""
    launch = KassaLaunch(workers=workers, embedded_worker=False, log_level="warning")
    port = free_port()
    base_url = f"http://{HOST}:{port}"
    (command,) = kassa_commands(launch, port)
    with background_process(command, env, log) as proc:
        _wait_healthy(proc, base_url, log)
        yield base_url


# --------------------------------------------------------------------------- a run


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through every `finally`: processes, database, files


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


def describe(host: dict[str, Any]) -> str:
    """The machine, as the first line of a report gives it."""
    return f"nproc {host['nproc']}, Python {host['python']}"


def table_head(header: str, columns: str) -> list[str]:
    """The first lines of a report: what was run, then a table's column heads."""
    return [header, "", columns, "-" * len(columns)]


def write_json(benchmark: str, fields: dict[str, Any]) -> Path:
    """`bench/results/<benchmark>-<timestamp>.json`: the benchmark's name, the timestamp,
    then `fields`."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{benchmark}-{stamp}.json"
    document = {"benchmark": benchmark, "timestamp": stamp, **fields}
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


class Judged(Protocol):
    """A benchmark's run on one database, with what went wrong in it (nothing if passed)."""

    @property
    def database(self) -> str: ...

    @property
    def problems(self) -> Sequence[str]: ...


def problem_lines(runs: Sequence[Judged]) -> list[str]:
    """The report's closing lines, one a problem: `PROBLEM <database>: <what>`."""
    return [f"PROBLEM {run.database}: {p}" for run in runs for p in run.problems]


def no_problems(runs: Sequence[Judged]) -> bool:
    """`run_benchmark`'s `passed` for a benchmark that passes when no run had a problem."""
    return not any(run.problems for run in runs)


def run_benchmark(
    benchmark: str,
    params: P,
    bench: Callable[[P, Path], T],
    render: Callable[[P, dict[str, Any], T], str],
    document: Callable[[P, dict[str, Any], T], dict[str, Any]],
    passed: Callable[[T], bool],
) -> int:
    """One run of a benchmark, start to finish; returns the exit status.

    `bench(params, workdir)` gets a scratch directory that is removed afterwards. Ctrl-C
    stops the run (exit status INTERRUPTED, nothing reported), and SIGTERM unwinds the
    same way, stopping every server and worker process and dropping every scratch database
    on the way. Then the report: `render`'s text is printed, `document`'s fields are written
    to the results file (`write_json`), and the status is 0 if the outcome `passed`, else 1.
    """
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    host = machine()
    workdir = Path(tempfile.mkdtemp(prefix="kassa-bench-"))
    try:
        outcome = bench(params, workdir)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(render(params, host, outcome))
    print(f"\nresults written to {write_json(benchmark, document(params, host, outcome))}")
    return 0 if passed(outcome) else 1
