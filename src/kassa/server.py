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
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# Each API process of `serve(..., workers > 1)` builds its app with this factory.
API_FACTORY = "kassa.server:api_process_app"
_TCP_FAMILIES = (socket.AF_INET, socket.AF_INET6)


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
) -> uvicorn.Config:
    """The uvicorn configuration every `kassa serve` runs with. `app` is an ASGI app, or
    with `workers > 1` the import string of a factory (`API_FACTORY`)."""
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


def serve(app: Callable[..., Any], *, host: str, port: int, log_level: str = "info") -> None:
    """Serve `app` in this process; returns after SIGINT or SIGTERM and a graceful shutdown."""
    with _stops_return():
        uvicorn.Server(config(app, host=host, port=port, log_level=log_level)).run()


def serve_processes(*, host: str, port: int, workers: int, log_level: str = "info") -> None:
    """Serve `API_FACTORY` in `workers` processes on one listening socket, under uvicorn's
    supervisor: it restarts a process that dies, and on SIGINT or SIGTERM stops them all
    and waits for them before it returns. The children see this process's environment.
    A process that cannot start (its app fails to build) stops them all: SystemExit(3)."""
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    settings = config(API_FACTORY, host=host, port=port, workers=workers, log_level=log_level)
    listener = settings.bind_socket()
    supervisor = Multiprocess(settings, sockets=[listener])
    try:
        supervisor.run()
    finally:
        listener.close()
    if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):
        raise SystemExit(STARTUP_FAILURE)
