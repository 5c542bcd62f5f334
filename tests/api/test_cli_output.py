"""What the `kassa` command line prints when its output goes into a pipe or a file:
nothing cut or wrapped that someone will paste into the next command, readable totals,
one log line per background job, and a demo that takes its port from `make`."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import update

from kassa.bootstrap import Kassa
from kassa.services.jobs import JobHandler
from kassa.services.webhooks import APPLY_EVENT
from kassa.storage.tables import Job
from kassa.worker import Worker
from tests.api.test_cli import KASSA, run_cli
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
LONG_KIND = "reports.rebuild_the_monthly_ledger_of_every_shop_at_once"  # 55


def test_make_demo_takes_a_port() -> None:
    def planned(*args: str) -> str:
        done = subprocess.run(
            ["make", "-n", "demo", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert ".venv/bin/kassa demo --port 8100" in planned("PORT=8100")
    assert ".venv/bin/kassa demo --port 8000" in planned()


def test_the_demo_hint_is_one_line_however_long(tmp_path: Path) -> None:
    deep = tmp_path / ("very-long-directory-name-" * 4) / "and-deeper-still"
    deep.mkdir(parents=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KASSA_")}
    env.pop("COLUMNS", None)
    proc = subprocess.Popen(
        [*KASSA, "demo", "--port", str(port), "--database", str(deep / "kassa-demo.db")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(x.startswith("try:") for x in lines):
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                break
            lines.append(line.rstrip("\n"))
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    ready = next(x for x in lines if x.startswith("demo catalogue ready"))
    assert ready.endswith(f"in sqlite:///{deep / 'kassa-demo.db'}")
    hint = next(x for x in lines if x.startswith("try:"))
    assert len(hint) > 80
    assert re.fullmatch(
        rf'try:  curl -H "Authorization: Bearer kassa_sk_\S+" '
        rf"http://127\.0\.0\.1:{port}/v1/products",
        hint,
    ), hint


def test_jobs_shows_whole_kinds_and_readable_totals(kassa: Kassa, database_url: str) -> None:
    for kind in (LONG_KIND, APPLY_EVENT, APPLY_EVENT):
        kassa.jobs.enqueue(kind, {})
    with kassa.db.transaction() as session:
        session.execute(update(Job).where(Job.pk == 2).values(state="done"))
        session.execute(update(Job).where(Job.pk == 3).values(state="dead"))
    done = run_cli("jobs", env={"KASSA_DATABASE_URL": database_url, "COLUMNS": "80"})
    assert done.returncode == 0, done.stderr
    assert any(LONG_KIND in line for line in done.stdout.splitlines()), done.stdout
    assert "…" not in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "queued=1 running=0 done=1 dead=1"


def test_keys_list_shows_ids_that_keys_revoke_takes(database_url: str) -> None:
    env = {"KASSA_DATABASE_URL": database_url, "COLUMNS": "80"}
    name = "the storefront of the spring sale, on the new servers"
    assert (
        run_cli("keys", "create", "--role", "storefront", "--name", name, env=env).returncode == 0
    )
    listed = run_cli("keys", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    (row,) = [line for line in listed.stdout.splitlines() if name in line]
    key_id = row.strip("│ ").split("│")[0].strip()
    revoked = run_cli("keys", "revoke", key_id, env=env)
    assert revoked.returncode == 0, revoked.stderr
    assert f"revoked {key_id}" in revoked.stderr


def test_kassa_worker_logs_one_line_per_job(kassa: Kassa, database_url: str) -> None:
    kassa.jobs.enqueue(APPLY_EVENT, {"event_pk": 999_999})  # no such event: done at once
    proc = subprocess.Popen(
        [*KASSA, "worker", "--poll", "0.1"],
        env={**os.environ, "KASSA_DATABASE_URL": database_url},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    found = None
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and found is None:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                break
            found = re.search(
                r"INFO kassa\.jobs: job done kind=provider_event\.apply id=1 attempt=1 "
                r"ms=\d+ outcome=done",
                line,
            )
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert found is not None


def test_failed_jobs_log_their_outcome_and_error(
    kassa: Kassa, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(session: object, payload: object) -> None:
        raise RuntimeError("the printer is on fire")

    kassa.jobs.enqueue("test.boom", {}, max_attempts=2)
    worker = Worker(kassa, name="w", handlers={"test.boom": JobHandler(boom)})
    with caplog.at_level(logging.INFO, logger="kassa.jobs"):
        worker.run_once()
        kassa.jobs.retry_dead()  # not dead yet: nothing to do
        with kassa.db.transaction() as session:  # make it due again at once
            session.execute(update(Job).values(run_after=kassa.clock()))
        worker.run_once()
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "kassa.jobs"]
    assert [level for level, _ in lines] == ["INFO", "WARNING"]
    assert re.fullmatch(
        r"job failed kind=test\.boom id=1 attempt=1 ms=\d+ outcome=retry "
        r"error=RuntimeError: the printer is on fire",
        lines[0][1],
    )
    assert "attempt=2" in lines[1][1] and "outcome=dead" in lines[1][1]
