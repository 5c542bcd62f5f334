"""A real HTTP receiver for outgoing webhook tests: `http.server` on a thread, on loopback.

Each path answers as the test scripts it (`answer(path, 500, 204)`: the first request
500, then 204 for ever; default 204); `hold(path)` makes its requests wait until
`release()` (or the receiver stops), as an endpoint that hangs. Every request is recorded
with its headers, body and arrival time, and `verify` checks its signature with the
`standardwebhooks` library, as a shop's receiver would.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    def verify(self, secret: str) -> Any:
        """The event, if `secret` signed this request (else WebhookVerificationError)."""
        return Webhook(secret).verify(self.body, self.headers)


@dataclass
class Receiver:
    url: str = ""
    received: list[Received] = field(default_factory=list)
    scripts: dict[str, list[int]] = field(default_factory=dict)
    held: set[str] = field(default_factory=set)
    arrived: threading.Condition = field(default_factory=threading.Condition)
    gate: threading.Event = field(default_factory=threading.Event)
    delays: dict[str, float] = field(default_factory=dict)
    in_flight: dict[str, int] = field(default_factory=dict)
    most_in_flight: dict[str, int] = field(default_factory=dict)

    def answer(self, path: str, *statuses: int) -> None:
        self.scripts[path] = list(statuses)

    def slow(self, path: str, seconds: float) -> None:
        """Answer requests to `path` after `seconds` (to make them overlap)."""
        self.delays[path] = seconds

    def hold(self, path: str) -> None:
        self.held.add(path)

    def release(self) -> None:
        self.gate.set()

    def at(self, path: str) -> list[Received]:
        with self.arrived:
            return [r for r in self.received if r.path == path]

    def wait(self, path: str, count: int, timeout: float = 10) -> list[Received]:
        """The first `count` requests to `path`, waiting for them at most `timeout` s."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while True:
                got = [r for r in self.received if r.path == path]
                if len(got) >= count or time.monotonic() >= deadline:
                    return got
                self.arrived.wait(max(0.0, deadline - time.monotonic()))

    def _status(self, path: str) -> int:
        script = self.scripts.get(path)
        if not script:
            return 204
        return script.pop(0) if len(script) > 1 else script[0]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            record = Received(
                self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic()
            )
            with receiver.arrived:
                receiver.received.append(record)
                status = receiver._status(self.path)
                now = receiver.in_flight[self.path] = receiver.in_flight.get(self.path, 0) + 1
                most = receiver.most_in_flight.get(self.path, 0)
                receiver.most_in_flight[self.path] = max(most, now)
                receiver.arrived.notify_all()
            if self.path in receiver.held:
                receiver.gate.wait(60)
            time.sleep(receiver.delays.get(self.path, 0))
            with receiver.arrived:
                receiver.in_flight[self.path] -= 1
            try:
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()
            except OSError:
                pass  # the sender gave up (timed out, or was killed)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def serve_receiver(tls: ssl.SSLContext | None = None) -> Iterator[Receiver]:
    """A running receiver (for a fixture); stopped, and held requests released, after.
    With `tls` (a server context holding its certificate) it speaks HTTPS."""
    receiver = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    scheme = "https" if tls is not None else "http"
    receiver.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.release()
        server.shutdown()
        server.server_close()
