"""`kassa worker --concurrency 2`: two loops in one process share the queue; each runs some
jobs, none runs twice, and SIGTERM stops both."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import select

from kassa.bootstrap import Kassa
from kassa.config import Settings
from kassa.providers.mock.events import DELIVER_EVENT, emit
from kassa.storage.tables import Job

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 120


class Sink:
    """Where the worker delivers the sandbox's events: counts each event id it receives,
    taking a little time per delivery (as a real endpoint does) so both loops get work."""

    def __init__(self) -> None:
        self.received: Counter[str] = Counter()
        lock = threading.Lock()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(0.01)
                with lock:
                    received[json.loads(body)["id"]] += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/v1/webhooks/mock"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()


@pytest.fixture
def sink() -> Iterator[Sink]:
    events = Sink()
    yield events
    events.http.shutdown()
    events.http.server_close()


@pytest.fixture
def core(database_url: str) -> Iterator[Kassa]:
    kassa = Kassa(Settings(database_url=database_url))  # the real clock, as the worker's
    yield kassa
    kassa.close()


def _jobs(core: Kassa) -> list[tuple[str, int, str | None]]:
    with core.db.transaction(read_only=True) as s:
        return [
            (state, attempts, locked_by)
            for state, attempts, locked_by in s.execute(
                select(Job.state, Job.attempts, Job.locked_by).where(Job.kind == DELIVER_EVENT)
            )
        ]


def test_two_loops_in_one_process_each_run_some_jobs_none_twice(
    database_url: str, core: Kassa, sink: Sink, tmp_path: Path
) -> None:
    with core.db.transaction() as s:
        for n in range(EVENTS):
            emit(s, "payment_intent.succeeded", {"id": f"pi_{n}"}, datetime.now(UTC))
    log = tmp_path / "worker.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KASSA_")}
    env.update(KASSA_DATABASE_URL=database_url, KASSA_MOCK_WEBHOOK_URL=sink.url)
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kassa.cli", "worker", "--concurrency", "2", "--poll", "0.05"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while any(state != "done" for state, _, _ in _jobs(core)):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, Counter(state for state, _, _ in _jobs(core))
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    jobs = _jobs(core)
    assert len(jobs) == EVENTS
    assert {attempts for _, attempts, _ in jobs} == {1}  # no job was claimed twice
    assert len(sink.received) == EVENTS and set(sink.received.values()) == {1}
    per_loop = Counter(locked_by for _, _, locked_by in jobs)
    output = log.read_text()
    names = re.search(r"worker (\S+), (\S+) running", output)
    assert names is not None, output
    assert set(per_loop) == set(names.groups()), per_loop  # both loops, and only they
    assert min(per_loop.values()) >= 1, per_loop
    assert len(re.findall(r"kassa\.worker: worker \S+ stopped", output)) == 2, output
