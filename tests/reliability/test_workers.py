"""Worker processes: killed mid-job, and four of them sharing one queue."""

from __future__ import annotations

import os
import select as io_select
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from kassa.bootstrap import Kassa
from kassa.storage.tables import AuditRecord, Job

ROOT = Path(__file__).resolve().parents[2]


def spawn(database_url: str, mode: str, **env: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.worker_child", mode],
        cwd=ROOT,
        env={**os.environ, "KASSA_DATABASE_URL": database_url, **env},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert read_line(proc) == "ready"
    return proc


def read_line(proc: subprocess.Popen[str], timeout: float = 60) -> str:
    """The child's next line, or a failure (never a hang) if none comes in `timeout`."""
    assert proc.stdout is not None
    ready, _, _ = io_select.select([proc.stdout], [], [], timeout)
    if not ready:
        proc.kill()
        raise AssertionError(f"the worker child said nothing for {timeout} s")
    return proc.stdout.readline().strip()


def enqueue_markers(kassa: Kassa, count: int) -> None:
    now = kassa.clock()
    with kassa.db.transaction() as s:
        s.execute(
            insert(Job),
            [
                {
                    "kind": "test.marker",
                    "payload": {"n": n},
                    "state": "queued",
                    "attempts": 0,
                    "max_attempts": 5,
                    "run_after": now,
                    "created_at": now,
                }
                for n in range(count)
            ],
        )


def markers(kassa: Kassa) -> Counter[str]:
    with kassa.db.transaction(read_only=True) as s:
        return Counter(
            s.scalars(select(AuditRecord.subject_id).where(AuditRecord.action == "test.job"))
        )


def wait_for(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def test_a_worker_killed_mid_job_leaves_it_to_run_once_after_restart(
    database_url: str, kassa: Kassa
) -> None:
    enqueue_markers(kassa, 1)
    first = spawn(database_url, "forever", KASSA_TEST_JOB_SLEEP_S="60", KASSA_JOB_LEASE_S="2")
    assert read_line(first) == "in-job"
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    with kassa.db.transaction(read_only=True) as s:
        job = s.scalar(select(Job))
        assert job is not None and job.state == "running" and job.attempts == 1
    assert markers(kassa) == Counter()  # its transaction died with it

    second = spawn(database_url, "forever", KASSA_JOB_LEASE_S="2")
    try:

        def finished() -> bool:
            with kassa.db.transaction(read_only=True) as s:
                return s.scalar(select(Job.state)) == "done"

        wait_for(finished, 30)
    finally:
        second.terminate()
        second.wait(timeout=10)
    with kassa.db.transaction(read_only=True) as s:
        job = s.scalar(select(Job))
        assert job is not None and job.attempts == 2
    assert markers(kassa) == Counter({"0": 1})


def test_four_worker_processes_share_2000_jobs_none_twice_none_lost(
    database_url: str, kassa: Kassa, is_postgres: bool
) -> None:
    if not is_postgres:
        pytest.skip("many concurrent workers are a PostgreSQL deployment (SQLite: one writer)")
    enqueue_markers(kassa, 2000)
    workers = [spawn(database_url, "until-empty", KASSA_TEST_START_ON_GO="1") for _ in range(4)]
    for proc in workers:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in workers:
        assert proc.wait(timeout=300) == 0
    done = markers(kassa)
    assert len(done) == 2000 and set(done.values()) == {1}
    with kassa.db.transaction(read_only=True) as s:
        states = dict(s.execute(select(Job.state, func.count()).group_by(Job.state)).all())
        assert states == {"done": 2000}
        per_worker = Counter(
            str(a["worker"])
            for a in s.scalars(select(AuditRecord.after).where(AuditRecord.action == "test.job"))
            if a
        )
    assert len(per_worker) == 4, per_worker  # every process took a share
