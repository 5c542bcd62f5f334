"""`kassa serve --workers N`: API processes on one socket, TCP_NODELAY on every connection,
the embedded worker once (or not at all), the sandbox's events back to this server, and a
clean stop on SIGTERM and SIGINT."""

from __future__ import annotations

import os
import re
import signal
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import select

from kassa import server
from kassa.bootstrap import Kassa
from kassa.config import Settings
from kassa.providers.mock.events import DELIVER_EVENT
from kassa.services.catalogue import NewProduct
from kassa.services.context import RequestContext
from kassa.services.webhooks import APPLY_EVENT
from kassa.storage.migrate import upgrade
from kassa.storage.tables import Job, ProviderEvent
from tests.conftest import free_port
from tests.serving import start_serve, stop_all

ROOT = Path(__file__).resolve().parents[2]
WORKER_STARTED = re.compile(r"kassa\.worker: worker \S+ started")

# -- the protocol class, in this process --------------------------------------------------


async def _hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


def _nodelay_of_accepted(config: uvicorn.Config) -> list[int]:
    """Serve `config` on a socket bound the way uvicorn's multi-process mode binds it
    (`Config.bind_socket`: proto 0), make one request, and read TCP_NODELAY off the
    server's side of that (kept-alive) connection."""
    listener = config.bind_socket()
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not uv.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        with socket.create_connection(listener.getsockname()[:2], timeout=10) as client:
            client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert client.recv(1024).startswith(b"HTTP/1.1 200")
            return [
                proto.transport.get_extra_info("socket").getsockopt(  # type: ignore[attr-defined]
                    socket.IPPROTO_TCP, socket.TCP_NODELAY
                )
                for proto in list(uv.server_state.connections)
            ]
    finally:
        uv.should_exit = True
        thread.join(10)
        listener.close()


def test_kassas_protocol_sets_tcp_nodelay_where_uvicorns_own_leaves_it_off() -> None:
    port = free_port()
    ours = server.config(_hello, host="127.0.0.1", port=port, log_level="warning")
    assert _nodelay_of_accepted(ours) == [1]
    # Why the class exists: uvicorn's own protocol on asyncio's loop, on the same kind of
    # socket, leaves Nagle on (asyncio sets TCP_NODELAY only when the listener's proto is
    # IPPROTO_TCP). Should this start failing, uvicorn sets it itself and
    # NoDelayHttpToolsProtocol can go.
    theirs = uvicorn.Config(
        _hello, host="127.0.0.1", port=port, http="httptools", loop="asyncio", log_level="warning"
    )
    assert _nodelay_of_accepted(theirs) == [0]


# -- `kassa serve --workers 2`, as a user runs it ------------------------------------------


@dataclass
class Served:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def stderr(self) -> str:
        return self.log.read_text()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # it ended meanwhile
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def _api_processes(pid: int) -> dict[int, dict[str, str]]:
    """The uvicorn children of `pid` (multiprocessing's spawned processes; not its resource
    tracker), each with its environment."""
    found = {}
    for kid in _children(pid):
        try:
            if b"spawn_main" not in Path(f"/proc/{kid}/cmdline").read_bytes():
                continue
            raw = Path(f"/proc/{kid}/environ").read_bytes()
        except OSError:
            continue
        env = dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)
        found[kid] = env
    return found


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'kassa.db'}"
    upgrade(url)
    return url


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    """Starts `kassa serve ARGS` on a free port (in a session of its own, so a failing
    test still takes every process it started down with it)."""
    started: list[Served] = []

    def start(database_url: str, *args: str) -> Served:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KASSA_")}
        env["KASSA_DATABASE_URL"] = database_url
        proc, port, log = start_serve(tmp_path, env, *args)
        served = Served(f"http://127.0.0.1:{port}", port, proc, log)
        started.append(served)
        return served

    yield start
    stop_all([s.process for s in started])


def _healthz_median_ms(port: int, requests: int = 20) -> float:
    """The median time of sequential GET /healthz on one keep-alive connection. The client
    sets TCP_NODELAY on its side, so a slow answer is the server's: with Nagle on, the
    server's response body (a second write after the head) waits for the client's delayed
    ACK, 40 ms or more on Linux, on every request."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = conn.makefile("rb")

        def one() -> None:
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: kassa\r\n\r\n")
            assert reader.readline().startswith(b"HTTP/1.1 200")
            length = 0
            while (line := reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            reader.read(length)

        for _ in range(3):  # warm up: the pool's first connection, the first imports
            one()
        times = []
        for _ in range(requests):
            began = time.perf_counter()
            one()
            times.append((time.perf_counter() - began) * 1000)
        return statistics.median(times)


def _no_nagle_stall(port: int) -> float:
    """The best of three medians: a busy machine can slow a round, never speed one up past
    the delayed ACK, so this is below 30 ms only if no round waited for one."""
    return min(_healthz_median_ms(port) for _ in range(3))


def _shop(url: str) -> str:
    """A product and a storefront key in the database at `url`; returns the key."""
    core = Kassa(Settings(database_url=url))
    try:
        system = RequestContext.system("test")
        core.catalogue.create(system, NewProduct("MUG", "Mug", 1450, "EUR", stock=None))
        return core.api_keys.create(system, "storefront", "serve test")[1]
    finally:
        core.close()


def _pay(url: str, secret: str) -> None:
    auth = {"Authorization": f"Bearer {secret}"}
    with httpx.Client(base_url=url, headers=auth, timeout=30) as http:
        order = http.post(
            "/v1/orders",
            json={
                "email": "w@example.com",
                "currency": "EUR",
                "lines": [{"sku": "MUG", "quantity": 1}],
            },
        )
        assert order.status_code == 201, order.text
        paid = http.post(
            f"/v1/orders/{order.json()['id']}/payments", json={"payment_method": "pm_card_visa"}
        )
        assert paid.status_code == 201, paid.text


def _event_outcomes(url: str) -> list[str | None]:
    """The outcome of each provider event received (None: not applied yet)."""
    core = Kassa(Settings(database_url=url))
    try:
        with core.db.transaction(read_only=True) as s:
            return list(s.scalars(select(ProviderEvent.outcome).order_by(ProviderEvent.pk)))
    finally:
        core.close()


def _job_states(url: str) -> dict[str, set[str]]:
    core = Kassa(Settings(database_url=url))
    try:
        with core.db.transaction(read_only=True) as s:
            states: dict[str, set[str]] = {}
            for kind, state in s.execute(select(Job.kind, Job.state)):
                states.setdefault(kind, set()).add(state)
            return states
    finally:
        core.close()


def test_two_api_processes_one_embedded_worker_events_come_back_and_sigterm_ends_all(
    serve: Any, sqlite_url: str
) -> None:
    secret = _shop(sqlite_url)
    served: Served = serve(sqlite_url, "--workers", "2")

    apis = _api_processes(served.process.pid)
    assert len(apis) == 2, apis
    sandbox_url = f"{served.url}/v1/webhooks/mock"
    assert [env.get("KASSA_MOCK_WEBHOOK_URL") for env in apis.values()] == [sandbox_url] * 2

    assert _no_nagle_stall(served.port) < 30

    # The sandbox's signed event goes from the one worker back to this server and is
    # applied: stored as acknowledged, the payment having succeeded in the request already.
    _pay(served.url, secret)
    deadline = time.monotonic() + 60
    while _event_outcomes(sqlite_url) != ["already succeeded"]:
        assert time.monotonic() < deadline, (_event_outcomes(sqlite_url), _job_states(sqlite_url))
        time.sleep(0.3)
    assert _job_states(sqlite_url)[DELIVER_EVENT] == {"done"}
    assert APPLY_EVENT not in _job_states(sqlite_url)  # nothing was left to apply

    assert served.stop(signal.SIGTERM) == 0
    assert len(WORKER_STARTED.findall(served.stderr())) == 1  # once, not once per process
    assert "stopped" in served.stderr().splitlines()[-1]
    assert not [pid for pid in apis if Path(f"/proc/{pid}").exists()]  # no orphans


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's exit is reaped by whoever adopted it, which in
    a container may be slow or never)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_api_processes_stop_when_their_supervisor_is_killed(serve: Any, sqlite_url: str) -> None:
    served: Served = serve(sqlite_url, "--workers", "2", "--no-worker")
    apis = _api_processes(served.process.pid)
    assert len(apis) == 2, apis

    served.process.kill()  # SIGKILL: no chance to stop its children itself
    served.process.wait(timeout=10)

    deadline = time.monotonic() + 20
    while left := [pid for pid in apis if _running(pid)]:
        assert time.monotonic() < deadline, f"API processes {left} outlived their supervisor"
        time.sleep(0.2)
    with socket.socket() as probe:  # and the port is free for the next `kassa serve`
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", served.port))


def test_no_worker_runs_no_jobs_and_sigint_ends_all(serve: Any, sqlite_url: str) -> None:
    secret = _shop(sqlite_url)
    served: Served = serve(sqlite_url, "--workers", "2", "--no-worker")
    apis = _api_processes(served.process.pid)
    assert len(apis) == 2, apis

    _pay(served.url, secret)
    time.sleep(2)  # an embedded worker polls every 0.5 s: it would have delivered by now
    assert _job_states(sqlite_url)[DELIVER_EVENT] == {"queued"}

    assert served.stop(signal.SIGINT) == 0
    assert not WORKER_STARTED.search(served.stderr())
    assert not [pid for pid in apis if Path(f"/proc/{pid}").exists()]


def test_one_process_keeps_nodelay_and_stops_its_worker_on_sigterm(
    serve: Any, sqlite_url: str
) -> None:
    served: Served = serve(sqlite_url)
    assert _api_processes(served.process.pid) == {}  # it serves in its own process
    assert _no_nagle_stall(served.port) < 30
    assert served.stop(signal.SIGTERM) == 0  # not SIGTERM's default action: cleanup ran
    assert WORKER_STARTED.search(served.stderr())
    assert "stopped" in served.stderr().splitlines()[-1]
