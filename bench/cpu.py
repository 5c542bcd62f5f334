"""CPU time of the processes a benchmark is about, read from /proc, counted quiet to quiet.

What is counted. The *app*: every process in the sessions of the servers and workers the
benchmark started (each is started in a session of its own, so its supervisor, API
workers, worker processes and their children all share its session id). The *database*:
the client backends connected to the benchmark's scratch database, less the benchmark's
own monitoring connection, plus the PostgreSQL server's own processes (postmaster,
checkpointer, background writer, WAL writer, autovacuum), counted apart as
`postgres_service` and added to the database's figure. Backends of other databases on the
same server (other people's tests) are counted apart, as `other_postgres`, and left out of
the figures: the server may be shared, and their work is not ours. (The service processes
serve every database, so on a busy shared server they carry some of the others' work;
their share is in the results file.) On SQLite the database is a library in
the app's processes, so its CPU is in the app's column and the database column is empty.

Why /proc and not psutil: utime + stime of /proc/<pid>/stat is all that is needed, the
kernel's own accounting, with no dependency. Its unit is the clock tick (10 ms), fine over
hundreds of operations.

A process that exits between two readings keeps the last value read; the sampler thread
reads every process a few times a second, so at most a fraction of a second of a process
that dies mid-window is lost (the servers' processes live through every window).

Quiet to quiet (`CpuMeter.wait_quiet`): the kassa job queue has no job due (queued and due,
running, or waiting out a retry's backoff: `probe.JOBS_DUE`), and the counted processes
used less than `QUIET_CORES` of one core per app process for `QUIET_WINDOW_S`. The bar
grows with the processes because an idle kassa is not at zero: each worker loop polls the
queue twice a second, each API process keeps its key-cache listener, some 1-3 % of a core
each (`QuietPoint.idle_cores` says what the idle rate was). The server's own PostgreSQL
processes are left out of that test: they serve every database, and a shared server's
checkpoints are not ours to wait for. A quiet point is the end of such a window
(`after=True` gives its start instead, and `settled_at` is always its start), so
everything the operations caused in the background (event deliveries, webhook applies,
invoices) is in the figures.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SAMPLE_EVERY_S = 0.25
QUIET_WINDOW_S = 1.0
QUIET_CORES = 0.05  # per app process: under 5 % of one core is idle polling, not work
QUIET_POLL_S = 0.25

APP, DATABASE, SERVICE, OTHER_POSTGRES = "app", "database", "postgres_service", "other_postgres"
# A client backend's title: "postgres: <cluster>: <user> <database> <host>(<port>) <state>",
# or "... <user> <database> [local] <state>" over a Unix socket.
_POSTGRES_SERVICE_TITLES = (
    "checkpointer",
    "background writer",
    "walwriter",
    "autovacuum launcher",
    "logical replication launcher",
    "archiver",
    "startup",
)


@dataclass(frozen=True)
class Stat:
    pid: int
    ppid: int
    session: int
    start: int  # start time in ticks since boot: (pid, start) names one process
    ticks: int  # utime + stime


def read_stat(pid: int) -> Stat | None:
    """/proc/<pid>/stat, or None if the process is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces.
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): ppid is field 4, session 6, utime 14, stime 15, start 22.
    return Stat(
        pid=pid,
        ppid=int(fields[1]),
        session=int(fields[3]),
        start=int(fields[19]),
        ticks=int(fields[11]) + int(fields[12]),
    )


def process_title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except (OSError, UnicodeDecodeError):
        return ""


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


@dataclass(frozen=True)
class PostgresScope:
    """Which PostgreSQL processes are the benchmark's: the server's own, and the backends
    of `database` except `exclude` (the benchmark's own connections)."""

    postmaster: int
    database: str
    exclude: frozenset[int] = frozenset()

    def category(self, stat: Stat, title: Callable[[int], str] = process_title) -> str | None:
        """DATABASE, SERVICE, OTHER_POSTGRES, or None: not a PostgreSQL process, or one whose title
        is not set yet (asked again at the next reading)."""
        if stat.pid == self.postmaster:
            return SERVICE
        if stat.ppid != self.postmaster:
            return None
        if stat.pid in self.exclude:
            return OTHER_POSTGRES
        _, _, rest = title(stat.pid).partition("postgres: ")
        words = rest.split(": ", 1)[-1].split()  # past "<cluster>: ", if any
        if len(words) >= 3 and ("(" in words[2] or words[2] == "[local]"):
            return DATABASE if words[1] == self.database else OTHER_POSTGRES
        if words[:2] == ["autovacuum", "worker"]:
            return DATABASE if words[2:3] == [self.database] else OTHER_POSTGRES
        if words[:3] == ["parallel", "worker", "for"]:
            return OTHER_POSTGRES  # rare here; its leader's database is not in its title
        if " ".join(words).startswith(_POSTGRES_SERVICE_TITLES):
            return SERVICE
        return None


@dataclass(frozen=True)
class Cpu:
    """CPU seconds (user + system) per category over a window. `database_s` is the
    scratch database's backends plus the server's own processes (`service_s` of it)."""

    app_s: float
    database_s: float
    service_s: float
    other_postgres_s: float
    wall_s: float

    @property
    def total_s(self) -> float:
        return self.app_s + self.database_s

    def __add__(self, other: Cpu) -> Cpu:
        return Cpu(
            app_s=self.app_s + other.app_s,
            database_s=self.database_s + other.database_s,
            service_s=self.service_s + other.service_s,
            other_postgres_s=self.other_postgres_s + other.other_postgres_s,
            wall_s=self.wall_s + other.wall_s,
        )

    def per_op_ms(self, ops: int) -> dict[str, float]:
        n = max(ops, 1)
        return {
            "app_ms": round(1000 * self.app_s / n, 3),
            "database_ms": round(1000 * self.database_s / n, 3),
            "total_ms": round(1000 * self.total_s / n, 3),
            "postgres_service_ms": round(1000 * self.service_s / n, 3),
            "other_postgres_ms": round(1000 * self.other_postgres_s / n, 3),
        }


@dataclass(frozen=True)
class Snapshot:
    at: float  # time.monotonic()
    ticks: dict[tuple[int, int], tuple[str, int]]  # (pid, start) -> (category, ticks)
    app_processes: int = 0  # alive at this reading

    def total(self, category: str) -> int:
        return sum(t for cat, t in self.ticks.values() if cat == category)


def cpu_between(before: Snapshot, after: Snapshot) -> Cpu:
    """What each category used between two snapshots; a process born since `before`
    counts from zero."""
    used: dict[str, int] = {APP: 0, DATABASE: 0, SERVICE: 0, OTHER_POSTGRES: 0}
    for key, (category, ticks) in after.ticks.items():
        _, was = before.ticks.get(key, (category, 0))
        used[category] += max(0, ticks - was)
    return Cpu(
        app_s=used[APP] / CLOCK_TICKS,
        database_s=(used[DATABASE] + used[SERVICE]) / CLOCK_TICKS,
        service_s=used[SERVICE] / CLOCK_TICKS,
        other_postgres_s=used[OTHER_POSTGRES] / CLOCK_TICKS,
        wall_s=after.at - before.at,
    )


@dataclass
class QuietPoint:
    snapshot: Snapshot
    waited_s: float
    timed_out: bool
    idle_cores: float = float("nan")  # the counted processes' rate in the quiet window
    settled_at: float = float("nan")  # time.monotonic() where the quiet window began


@dataclass
class CpuMeter:
    """Reads the CPU of the app's sessions and the scratch database's PostgreSQL processes,
    in a sampler thread and on demand. `sessions` may change between windows (servers
    started and stopped); `jobs_due` tells whether kassa's queue has work due."""

    postgres: PostgresScope | None = None
    sessions: set[int] = field(default_factory=set)
    _seen: dict[tuple[int, int], tuple[str, int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._sample, name="cpu-meter", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY_S):
            self.read()

    def _category(self, stat: Stat) -> str | None:
        if stat.session in self.sessions:
            return APP
        return self.postgres.category(stat) if self.postgres is not None else None

    def read(self) -> Snapshot:
        """Read every process now; a process seen before but gone keeps its last value."""
        with self._lock:
            sessions = set(self.sessions)
            app = 0
            for pid in _pids():
                stat = read_stat(pid)
                if stat is None:
                    continue
                app += stat.session in sessions
                key = (stat.pid, stat.start)
                known = self._seen.get(key)
                category = (
                    known[0] if known and stat.session not in sessions else self._category(stat)
                )
                if category is not None:
                    self._seen[key] = (category, stat.ticks)
            return Snapshot(time.monotonic(), dict(self._seen), app)

    def wait_quiet(
        self, jobs_due: Callable[[], int] | None, *, after: bool, timeout_s: float
    ) -> QuietPoint:
        """Wait until nothing is due and the counted processes were idle for a window,
        reading every QUIET_POLL_S. `after=True` returns the window's start (where the work
        ended, to within a reading), else its end (where the next work may begin)."""
        began = time.monotonic()
        window: list[Snapshot] = [self.read()]
        while True:
            time.sleep(QUIET_POLL_S)
            now = self.read()
            waited = time.monotonic() - began
            if jobs_due is not None and jobs_due() > 0:
                window = [now]
            else:
                window.append(now)
                while len(window) > 1 and not _idle(window[0], now):
                    window.pop(0)
                if now.at - window[0].at >= QUIET_WINDOW_S:
                    point = window[0] if after else now
                    return QuietPoint(point, waited, False, _cores(window[0], now), window[0].at)
            if waited > timeout_s:
                return QuietPoint(now, waited, timed_out=True, settled_at=now.at)


def _used(start: Snapshot, end: Snapshot) -> int:
    """Ticks the app's processes and the database's backends used between two readings."""
    return (end.total(APP) - start.total(APP)) + (end.total(DATABASE) - start.total(DATABASE))


def _cores(start: Snapshot, end: Snapshot) -> float:
    span = end.at - start.at
    return _used(start, end) / CLOCK_TICKS / span if span > 0 else float("nan")


def _idle(start: Snapshot, end: Snapshot) -> bool:
    """Under QUIET_CORES of a core per app process between two readings (measured over at
    least QUIET_WINDOW_S, so one poll in a short span does not count as work)."""
    bar = QUIET_CORES * max(1, end.app_processes)
    return _used(start, end) <= bar * max(end.at - start.at, QUIET_WINDOW_S) * CLOCK_TICKS
