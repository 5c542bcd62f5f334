"""`kassa serve --workers 2` as a user runs it: `GET /metrics` answers, from either API
process, the requests of both (prometheus-client's multiprocess mode), and with
KASSA_LOG_FORMAT=json every line on stderr is a JSON object carrying the request id the
response carried. Both databases."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from kassa.bootstrap import Kassa
from kassa.config import Settings
from kassa.services.context import RequestContext
from tests.reliability.test_serve_workers import _api_processes
from tests.serving import start_serve, stop_all

ROOT = Path(__file__).resolve().parents[2]
HEALTHZ = {"method": "GET", "route": "/healthz", "status": "200"}


@dataclass
class Served:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    """`kassa serve ARGS` on a free port with the given KASSA_* environment, in a session
    of its own (a failing test still takes every process it started down with it)."""
    started: list[Served] = []

    def start(env_kassa: dict[str, str], *args: str) -> Served:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KASSA_", "PROMETHEUS"))}
        proc, port, log = start_serve(tmp_path, {**env, **env_kassa}, *args)
        served = Served(f"http://127.0.0.1:{port}", proc, log)
        started.append(served)
        return served

    yield start
    stop_all([s.process for s in started])


def _ops_key(database_url: str) -> str:
    core = Kassa(Settings(database_url=database_url))
    try:
        return core.api_keys.create(RequestContext.system("test"), "ops", "metrics")[1]
    finally:
        core.close()


def _healthz_count(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "kassa_http_requests_total" and sample.labels == HEALTHZ:
                return sample.value
    return 0.0


def _per_process(directory: str) -> dict[int, float]:
    """GET /healthz answered, per API process, read from each one's own file."""
    counts = {}
    for path in Path(directory).glob("counter_*.db"):
        pid = int(path.stem.split("_")[1])
        merged = MultiProcessCollector.merge([str(path)])
        counts[pid] = sum(
            s.value
            for metric in merged
            for s in metric.samples
            if s.name == "kassa_http_requests_total" and s.labels == HEALTHZ
        )
    return counts


def test_two_api_processes_scrape_the_sum_of_both(serve: Any, database_url: str) -> None:
    secret = _ops_key(database_url)
    served: Served = serve({"KASSA_DATABASE_URL": database_url}, "--workers", "2", "--no-worker")
    apis = _api_processes(served.process.pid)
    assert len(apis) == 2, apis
    directories = {env.get("PROMETHEUS_MULTIPROC_DIR") for env in apis.values()}
    assert len(directories) == 1 and None not in directories, directories  # one, shared
    directory = str(directories.pop())

    # New connections until both processes have answered some (the kernel hands each
    # accepted connection to either), at most 400.
    sent = 0
    while sent < 400:
        for _ in range(20):
            assert httpx.get(served.url + "/healthz", timeout=10).status_code == 200
        sent += 20
        if len([n for n in _per_process(directory).values() if n]) == 2:
            break
    per_process = _per_process(directory)
    assert sorted(per_process) == sorted(apis), (per_process, apis)
    assert all(per_process.values()), per_process  # both served some
    assert sum(per_process.values()) >= sent + 1  # and the fixture's readiness probes

    # Whichever process answers the scrape, it reports every process's requests.
    totals = set()
    for _ in range(6):
        r = httpx.get(
            served.url + "/metrics", headers={"Authorization": f"Bearer {secret}"}, timeout=10
        )
        assert r.status_code == 200, r.text
        totals.add(_healthz_count(r.text))
    assert totals == {sum(per_process.values())}, (totals, per_process)

    assert served.process.send_signal(signal.SIGTERM) is None
    assert served.process.wait(timeout=30) == 0
    assert not Path(directory).exists()  # its own directory: removed when it stops


def test_json_logs_carry_the_request_id_of_the_response(serve: Any, database_url: str) -> None:
    env = {"KASSA_DATABASE_URL": database_url, "KASSA_LOG_FORMAT": "json"}
    served: Served = serve(env, "--workers", "2")

    mine = f"test-{uuid.uuid4().hex[:12]}"
    given = httpx.get(served.url + "/v1/orders", headers={"X-Request-Id": mine}, timeout=10)
    assert given.status_code == 401 and given.headers["x-request-id"] == mine
    drawn = httpx.get(served.url + "/v1/orders/ord_missing", timeout=10)
    drawn_id = drawn.headers["x-request-id"]
    assert drawn_id.startswith("req_"), drawn.headers

    served.process.send_signal(signal.SIGTERM)
    assert served.process.wait(timeout=30) == 0
    lines = served.lines()
    entries = [json.loads(line) for line in lines]  # every line: a JSON object
    assert all(isinstance(e, dict) for e in entries)
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries), entries
    assert all(e["time"].endswith("Z") for e in entries)

    access = {e["request_id"]: e for e in entries if e["logger"] == "uvicorn.access"}
    assert access[mine]["path"] == "/v1/orders" and access[mine]["status"] == 401
    assert access[drawn_id]["path"] == "/v1/orders/ord_missing"
    assert access[drawn_id]["status"] == drawn.status_code == 401
    # the embedded worker's lines too (in the supervisor), and no request id outside one
    worker = [e for e in entries if e["logger"] == "kassa.worker"]
    assert worker and all("request_id" not in e for e in worker), worker
