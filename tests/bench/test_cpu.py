"""CPU accounting from /proc, and the quiet point (bench/cpu.py)."""

from __future__ import annotations

import os
import subprocess
import sys

from cpu import (
    APP,
    CLOCK_TICKS,
    DATABASE,
    OTHER_POSTGRES,
    SERVICE,
    CpuMeter,
    PostgresScope,
    Snapshot,
    Stat,
    cpu_between,
    read_stat,
)


def test_read_stat_reads_this_process() -> None:
    stat = read_stat(os.getpid())
    assert stat is not None
    assert (stat.pid, stat.ppid, stat.session) == (os.getpid(), os.getppid(), os.getsid(0))
    assert stat.ticks >= 0
    assert read_stat(2**22 + 1) is None  # above pid_max: no such process


def _stat(pid: int, ppid: int = 100) -> Stat:
    return Stat(pid=pid, ppid=ppid, session=pid, start=1, ticks=0)


def test_postgres_processes_are_sorted_by_database() -> None:
    titles = {
        1: "postgres: 15/main: postgres kassa_bench_x 127.0.0.1(5000) idle",
        2: "postgres: 15/main: postgres test 127.0.0.1(5001) idle in transaction",
        3: "postgres: 15/main: postgres kassa_bench_x [local] SELECT",
        4: "postgres: 15/main: checkpointer ",
        5: "postgres: 15/main: autovacuum worker kassa_bench_x",
        6: "postgres: 15/main: postgres kassa_bench_x 127.0.0.1(5002) idle",
        7: "postgres: 15/main: ",  # a backend not yet named
    }
    scope = PostgresScope(postmaster=100, database="kassa_bench_x", exclude=frozenset({6}))

    def category(pid: int, ppid: int = 100) -> str | None:
        return scope.category(_stat(pid, ppid), titles.__getitem__)

    assert category(1) == DATABASE
    assert category(2) == OTHER_POSTGRES
    assert category(3) == DATABASE
    assert category(4) == SERVICE
    assert category(5) == DATABASE
    assert category(6) == OTHER_POSTGRES  # the benchmark's own connection
    assert category(7) is None
    assert category(1, ppid=1) is None  # not the server's child
    assert scope.category(_stat(100, 1), titles.__getitem__) == SERVICE  # the postmaster


def test_cpu_between_counts_newcomers_from_zero_and_keeps_the_departed() -> None:
    before = Snapshot(0.0, {(1, 1): (APP, 100), (2, 1): (DATABASE, 50), (3, 1): (APP, 10)})
    after = Snapshot(
        2.0,
        {
            (1, 1): (APP, 130),
            (2, 1): (DATABASE, 60),
            (3, 1): (APP, 10),  # gone since: its last reading
            (4, 1): (APP, 20),  # born since
            (5, 1): (SERVICE, 5),
            (6, 1): (OTHER_POSTGRES, 99),
        },
    )
    cpu = cpu_between(before, after)
    assert cpu.app_s == 50 / CLOCK_TICKS
    assert cpu.database_s == 15 / CLOCK_TICKS  # its backends and the server's own
    assert cpu.service_s == 5 / CLOCK_TICKS
    assert cpu.other_postgres_s == 99 / CLOCK_TICKS
    assert cpu.wall_s == 2.0
    assert cpu.per_op_ms(5)["total_ms"] == round(1000 * 65 / CLOCK_TICKS / 5, 3)


BURN = "import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end: pass\n"
BURN += "time.sleep(60)\n"


def test_the_quiet_point_comes_after_the_work_and_holds_all_of_it() -> None:
    child = subprocess.Popen([sys.executable, "-c", BURN], start_new_session=True)
    meter = CpuMeter(sessions={child.pid})
    try:
        start = meter.read()
        quiet = meter.wait_quiet(None, after=True, timeout_s=30)
        assert not quiet.timed_out
        burned = cpu_between(start, quiet.snapshot).app_s
        assert 0.5 <= burned <= 0.9
        later = meter.wait_quiet(None, after=False, timeout_s=30)
        assert cpu_between(quiet.snapshot, later.snapshot).app_s < 0.1
        assert later.snapshot.at - later.settled_at >= 1.0  # the window it waited out
        due = iter([1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
        waited = meter.wait_quiet(lambda: next(due, 0), after=True, timeout_s=30)
        assert waited.waited_s >= 1.0  # two readings with a job due, then a quiet second
    finally:
        child.kill()
        child.wait()
