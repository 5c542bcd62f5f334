"""CPU per request with and without `/metrics`'s request middleware (`kassa.api.metrics`),
the ASGI app called in-process (no HTTP, no client): what the middleware adds to a request.

    python bench/metrics_overhead.py [--requests 3000] [--rounds 7]

Two apps from `create_app` on one SQLite database, one with `RequestMetrics` removed, take
turns (rounds, alternating, so a change in the machine's load hits both alike) serving
`GET /v1/products/{sku}` with a cached API key (authentication, one read, serialization).
Per round: the process's CPU time (all threads: the endpoint runs in the thread pool) over
the requests. Prints each app's median CPU per request and the difference, in memory
(one API process) and then, in a child process, in prometheus-client's multiprocess mode
(`kassa serve --workers N`), where each count is written to a memory-mapped file.

Also, first, the middleware alone around an app that only answers: on a shared machine
the two full apps' medians differ by more than the middleware costs (noise of +-5 % of a
2 ms request), so that figure is the one to read; the full comparison bounds it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kassa.api.app import create_app
from kassa.api.metrics import ApiMetrics, RequestMetrics, multiprocess_mode
from kassa.bootstrap import Kassa
from kassa.config import Settings
from kassa.services.catalogue import NewProduct
from kassa.services.context import RequestContext
from kassa.storage.migrate import upgrade


def _scope(secret: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/v1/products/MUG",
        "raw_path": b"/v1/products/MUG",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"bench"), (b"authorization", f"Bearer {secret}".encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }


async def _serve(app: Any, secret: str, requests: int) -> float:
    """CPU seconds per request over `requests` sequential requests."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    began = time.process_time()
    for _ in range(requests):
        await app(_scope(secret), receive, send)
    spent = time.process_time() - began
    assert set(statuses) == {200}, set(statuses)
    return spent / requests


def measure(requests: int, rounds: int) -> tuple[float, float]:
    """Median CPU µs per request: (with the middleware, without)."""
    directory = Path(tempfile.mkdtemp(prefix="kassa-bench-"))
    url = f"sqlite:///{directory / 'kassa.db'}"
    upgrade(url)
    core = Kassa(Settings(database_url=url))
    system = RequestContext.system("bench")
    core.catalogue.create(system, NewProduct("MUG", "Mug", 1450, "EUR", stock=None))
    _, secret = core.api_keys.create(system, "analyst", "bench")
    with_metrics = create_app(core)
    without = create_app(core)
    without.user_middleware = [m for m in without.user_middleware if m.cls is not RequestMetrics]
    apps = {"with": with_metrics, "without": without}
    results: dict[str, list[float]] = {"with": [], "without": []}

    async def run() -> None:
        for app in apps.values():  # warm up: imports, pools, the key cache
            await _serve(app, secret, 200)
        order = list(apps.items())
        for _ in range(rounds):
            for name, app in order:
                results[name].append(await _serve(app, secret, requests))
            order.reverse()  # neither always runs first

    asyncio.run(run())
    core.close()
    return (
        statistics.median(results["with"]) * 1e6,
        statistics.median(results["without"]) * 1e6,
    )


async def _isolated(requests: int) -> tuple[float, float]:
    """CPU µs per request of the middleware around an app that does nothing but answer
    (as if from the route `/v1/products/{sku}`): the middleware's own cost, without the
    noise of a real request's 2 ms."""

    class Matched:
        path = "/v1/products/{sku}"

    async def bare(scope: Any, receive: Any, send: Any) -> None:
        scope["route"] = Matched
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> dict[str, Any]:
        return {}

    async def send(message: Any) -> None:
        return None

    async def per_request(app: Any) -> float:
        began = time.process_time()
        for _ in range(requests):
            await app({"type": "http", "method": "GET"}, receive, send)
        return (time.process_time() - began) / requests * 1e6

    wrapped = RequestMetrics(bare, ApiMetrics(["mock"]))
    with_us = statistics.median([await per_request(wrapped) for _ in range(5)])
    without_us = statistics.median([await per_request(bare) for _ in range(5)])
    return with_us, without_us


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    mode = "multiprocess (files)" if multiprocess_mode() else "one process (memory)"
    alone, bare = asyncio.run(_isolated(50_000))
    print(f"{mode}: the middleware alone {alone - bare:.1f} µs/request")
    with_us, without_us = measure(args.requests, args.rounds)
    print(
        f"{mode}: GET /v1/products/{{sku}} with {with_us:.0f} µs, without {without_us:.0f} "
        f"µs CPU/request: {with_us - without_us:+.1f} µs "
        f"({(with_us - without_us) / without_us * 100:+.1f} %)"
    )
    if not args.child:
        with tempfile.TemporaryDirectory(prefix="kassa-metrics-") as directory:
            env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": directory}
            argv = [sys.executable, __file__, "--child", f"--requests={args.requests}"]
            subprocess.run([*argv, f"--rounds={args.rounds}"], env=env, check=True)


if __name__ == "__main__":
    main()
