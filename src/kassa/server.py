"""Running the HTTP API under uvicorn: in this process, or in N processes sharing one socket.

Its own module so that the CLI decides *what* runs (migrations, the embedded worker) and
this one only *how* uvicorn runs it. Two things uvicorn does not do by itself:

- **TCP_NODELAY on every accepted connection.** uvicorn writes a response's head and its
  body in separate `send`s. asyncio sets TCP_NODELAY only on accepted sockets whose
  `proto` is IPPROTO_TCP (`asyncio.base_events._set_nodelay`); uvicorn's multi-process
  mode binds its listening socket with `socket.socket(family=...)` (proto 0), and an
  accepted socket inherits its listener's proto, so there Nagle holds each body back until
  the client's delayed ACK (~40 ms on Linux): every request pays 40 ms. `NoDelayHttpToolsProtocol`
  sets the option itself, whatever the socket came from.
- **The app in the children.** With `workers > 1` uvicorn starts each API process with
  `spawn` and needs the app as an import string: `API_FACTORY` builds a fresh core from
  the environment (`KASSA_*`) in each one.
- **Children that outlive their supervisor.** uvicorn's supervisor stops its API
  processes when it is told to stop, but a supervisor killed outright (SIGKILL, the OOM
  killer) left them running, still holding the port and serving without their embedded
  worker. Each API process therefore watches its parent (`end_with_parent`) and stops
  itself, gracefully, when the parent is gone.
- **Metrics summed over the children.** Each API process counts its own requests; with
  `workers > 1` they write them to files in one directory (`metrics_directory`), which
  every process's `GET /metrics` sums (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import asyncio
import glob
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from kassa import logs

# Each API process of `serve(..., workers > 1)` builds its app with this factory.
API_FACTORY = "kassa.server:api_process_app"
WORKER_HEALTHCHECK_TIMEOUT_S = 30
_TCP_FAMILIES = (socket.AF_INET, socket.AF_INET6)
# prometheus-client's multiprocess mode: where each API process writes its counters
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


def api_process_app() -> Any:
    """The app of one API process of a multi-process `serve`: kassa's app, in a process
    that ends itself when its supervisor is gone (`end_with_parent`)."""
    from kassa.api.app import create_app

    end_with_parent()
    return create_app()


def end_with_parent() -> threading.Thread | None:
    """In a process started by `multiprocessing` (uvicorn's supervisor spawns its API
    processes so), send this process SIGTERM, which uvicorn answers with a graceful
    shutdown, as soon as the parent process has exited, however it died. The parent's
    sentinel (a pipe the parent's death closes) is waited on in a daemon thread: no
    polling. Returns the thread, or None when this process has no such parent."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return None

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="kassa-parent-watch", daemon=True)
    thread.start()
    return thread


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Turn Nagle's algorithm off on a TCP transport (a Unix socket has none to turn off)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in _TCP_FAMILIES:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class NoDelayHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol (llhttp, the C parser: a fraction of h11's CPU per
    request), with TCP_NODELAY set on each connection as it is accepted."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        set_nodelay(transport)
        super().connection_made(transport)


def config(
    app: Callable[..., Any] | str,
    *,
    host: str,
    port: int,
    workers: int = 1,
    log_level: str = "info",
    log_format: str = "text",
) -> uvicorn.Config:
    """The uvicorn configuration every `kassa serve` runs with. `app` is an ASGI app, or
    with `workers > 1` the import string of a factory (`API_FACTORY`). `log_format`:
    uvicorn's own lines, or JSON ones (`kassa.logs`)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        workers=workers,
        factory=isinstance(app, str),
        http=NoDelayHttpToolsProtocol,
        # asyncio's own loop: uvloop measured no better here (kassa's request CPU is in
        # the thread pool and the database driver, not in the loop)
        loop="asyncio",
        log_level=log_level,
        log_config=logs.uvicorn_config(log_format, log_level) or LOGGING_CONFIG,
        # uvicorn's supervisor kills an API process that has not answered its health
        # check within this long. A spawned process imports kassa before it can answer
        # (about 2 s on an idle 2-core machine, several times that under load), and the
        # default of 5 s had the supervisor killing and restarting processes that were
        # only starting on a busy machine.
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_TIMEOUT_S,
    )


@contextmanager
def _stops_return() -> Iterator[None]:
    """While uvicorn serves in this process it owns SIGINT and SIGTERM; after a graceful
    shutdown it re-raises the signal with the handler it found. Finding a no-op here, that
    re-raise ends `serve` normally, so the caller's cleanup (stopping the embedded worker,
    closing the database) runs instead of the process dying on SIGTERM's default action."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread has signals; uvicorn leaves them alone there too
        return
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(
    app: Callable[..., Any],
    *,
    host: str,
    port: int,
    log_level: str = "info",
    log_format: str = "text",
) -> None:
    """Serve `app` in this process; returns after SIGINT or SIGTERM and a graceful shutdown."""
    settings = config(app, host=host, port=port, log_level=log_level, log_format=log_format)
    with _stops_return():
        uvicorn.Server(settings).run()


@contextmanager
def metrics_directory() -> Iterator[str]:
    """Where the API processes started meanwhile keep their metrics, summed by each one's
    `GET /metrics` (prometheus-client's multiprocess mode; see `kassa.api.metrics`):
    PROMETHEUS_MULTIPROC_DIR if the operator set it (emptied of an earlier run's files
    first, as prometheus-client requires), else a new directory of its own, removed
    afterwards. The processes inherit the variable, so it is set before they start."""
    given = os.environ.get(MULTIPROC_DIR)
    if given:
        os.makedirs(given, exist_ok=True)
        for stale in glob.glob(os.path.join(given, "*.db")):
            os.remove(stale)
        yield given
        return
    path = tempfile.mkdtemp(prefix="kassa-metrics-")
    os.environ[MULTIPROC_DIR] = path
    try:
        yield path
    finally:
        os.environ.pop(MULTIPROC_DIR, None)
        shutil.rmtree(path, ignore_errors=True)


def serve_processes(
    *, host: str, port: int, workers: int, log_level: str = "info", log_format: str = "text"
) -> None:
    """Serve `API_FACTORY` in `workers` processes on one listening socket, under uvicorn's
    supervisor: it restarts a process that dies, and on SIGINT or SIGTERM stops them all
    and waits for them before it returns. The children see this process's environment.
    A process that cannot start (its app fails to build) stops them all: SystemExit(3)."""
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    settings = config(
        API_FACTORY,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        log_format=log_format,
    )
    listener = settings.bind_socket()
    supervisor = Multiprocess(settings, sockets=[listener])
    try:
        with metrics_directory():
            supervisor.run()
    finally:
        listener.close()
    if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):
        raise SystemExit(STARTUP_FAILURE)
