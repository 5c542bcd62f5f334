"""A shop's webhook receiver for `notifications.py`, in a process of its own, and a dead
endpoint beside it.

Why a process of its own: the receiver must not share a GIL with the benchmark's client
threads and CPU meter, or its answers would slow down with them and the delivery rate
would measure the benchmark, not kassa. It is uvicorn (the server kassa itself runs on)
with a bare ASGI function, no framework: `POST /hook/<name>` answers 204 at once and
counts the request per name (requests, distinct `webhook-id`s, first and last arrival on
the system's monotonic clock, which every process on the host shares).

Signatures: the benchmark hands the receiver each endpoint's secret (`PUT /_secrets`,
`{name: "whsec_..."}`) as kassa shows it at creation; the first request of each name and
then every `VERIFY_EVERY`-th is checked with the `standardwebhooks` library, as a shop's
receiver checks it (a bad one is counted, and answered 400 so kassa records it failed).
Verifying every request would make the receiver, not kassa, the bottleneck at 100
endpoints; a wrong secret or signing scheme fails the first request of every endpoint.

The dead endpoint (`--dead-port`): a TCP listener that accepts connections, reads what it
is sent and never answers, until the sender hangs up: an endpoint that hangs, the harder
case for kassa (it holds a sender thread for the whole 10 s timeout; a refused connection
fails in a millisecond). It counts the connections it took.

    python bench/receiver.py --port P --dead-port Q     (GET /_stats for the counts)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

VERIFY_EVERY = 20
HOOK_PREFIX = "/hook/"


@dataclass
class Counts:
    received: int = 0
    ids: set[str] = field(default_factory=set)
    verified: int = 0
    bad: int = 0
    first: float | None = None
    last: float | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "distinct": len(self.ids),
            "verified": self.verified,
            "bad": self.bad,
            "first": self.first,
            "last": self.last,
        }


@dataclass
class State:
    hooks: dict[str, Counts] = field(default_factory=dict)
    secrets: dict[str, Webhook] = field(default_factory=dict)
    dead_connections: int = 0
    dead_open: int = 0

    def stats(self) -> dict[str, Any]:
        return {
            "hooks": {name: c.summary() for name, c in self.hooks.items()},
            "dead": {"connections": self.dead_connections, "open": self.dead_open},
        }

    def receive(self, name: str, headers: dict[str, str], body: bytes) -> int:
        """Count one delivery; the status to answer."""
        counts = self.hooks.setdefault(name, Counts())
        now = time.monotonic()
        counts.received += 1
        counts.ids.add(headers.get("webhook-id", ""))
        counts.first = now if counts.first is None else counts.first
        counts.last = now
        if counts.received % VERIFY_EVERY != 1:
            return 204
        webhook = self.secrets.get(name)
        try:
            if webhook is None:
                raise WebhookVerificationError(f"no secret for {name}")
            webhook.verify(body, headers)
        except WebhookVerificationError:
            counts.bad += 1
            return 400
        counts.verified += 1
        return 204


async def _body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def application(state: State) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        body = await _body(receive)
        answer = b""
        if method == "POST" and path.startswith(HOOK_PREFIX):
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            status = state.receive(path[len(HOOK_PREFIX) :], headers, body)
        elif method == "PUT" and path == "/_secrets":
            state.secrets.update({k: Webhook(v) for k, v in json.loads(body).items()})
            status = 204
        elif method == "GET" and path == "/_stats":
            status, answer = 200, json.dumps(state.stats()).encode()
        elif method == "POST" and path == "/_reset":
            state.hooks.clear()
            state.secrets.clear()
            state.dead_connections = 0
            status = 204
        else:
            status = 404
        response_headers = [(b"content-length", str(len(answer)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": answer})

    return app


def dead_handler(state: State) -> Any:
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.dead_connections += 1
        state.dead_open += 1
        try:
            while await reader.read(65536):
                pass  # read the request, never answer; EOF when the sender gives up
        except ConnectionError:
            pass
        finally:
            state.dead_open -= 1
            writer.close()

    return hang


async def serve(host: str, port: int, dead_port: int) -> None:
    state = State()
    dead = await asyncio.start_server(dead_handler(state), host, dead_port)
    config = uvicorn.Config(
        application(state), host=host, port=port, log_level="warning", access_log=False
    )
    async with dead:
        await uvicorn.Server(config).serve()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dead-port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, args.dead_port))


if __name__ == "__main__":
    main()
