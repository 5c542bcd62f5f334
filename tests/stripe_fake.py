"""A local fake Stripe for tests: localstripe, behind a recording HTTP proxy.

The adapter talks to the proxy through the official SDK over real HTTP; the proxy
forwards every request to localstripe and keeps (method, path, headers), so tests can
see exactly what left kassa (e.g. the Idempotency-Key on every mutating call) without
patching the SDK.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from tests.conftest import free_port


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Recorder:
    requests: list[RecordedRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, request: RecordedRequest) -> None:
        with self.lock:
            self.requests.append(request)

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()


def _proxy_handler(upstream: str, recorder: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            recorder.add(
                RecordedRequest(self.command, self.path, {k.lower(): v for k, v in headers.items()})
            )
            reply = httpx.request(
                self.command, upstream + self.path, content=body, headers=headers, timeout=30
            )
            self.send_response(reply.status_code)
            for key, value in reply.headers.items():
                if key.lower() not in (
                    "content-length",
                    "transfer-encoding",
                    "connection",
                    "content-encoding",
                ):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(reply.content)))
            self.end_headers()
            self.wfile.write(reply.content)

        do_GET = do_POST = do_DELETE = _forward

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@dataclass
class FakeStripe:
    url: str  # the proxy: point KASSA_STRIPE_API_BASE here
    upstream: str  # localstripe itself
    recorder: Recorder


def start_fake_stripe() -> Iterator[FakeStripe]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "localstripe", "--port", str(port), "--from-scratch"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    upstream = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(upstream + "/v1/customers", auth=("sk_test_x", ""), timeout=1)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("localstripe did not start") from None
            time.sleep(0.2)
    recorder = Recorder()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _proxy_handler(upstream, recorder))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield FakeStripe(f"http://127.0.0.1:{server.server_address[1]}", upstream, recorder)
    finally:
        server.shutdown()
        proc.terminate()
        proc.wait(timeout=10)
