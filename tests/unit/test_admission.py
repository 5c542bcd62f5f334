"""Admission (api/admission.py): a bounded number of requests in flight, the turn given
back as the response starts, and never kept by a request that failed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kassa.api.admission import Admission


class _App:
    """An ASGI app whose requests wait for `release` before answering."""

    def __init__(self, fail: bool = False) -> None:
        self.inside = 0
        self.most = 0
        self.release = asyncio.Event()
        self.fail = fail

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.inside += 1
        self.most = max(self.most, self.inside)
        await self.release.wait()
        self.inside -= 1
        if self.fail:
            raise RuntimeError("boom")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def _noop(_message: Any) -> None:
    return None


async def _receive() -> Any:
    return {"type": "http.request", "body": b""}


def test_no_more_than_the_limit_work_at_once_and_every_request_gets_its_turn() -> None:
    async def run() -> tuple[int, int]:
        app = _App()
        admitted = Admission(app, limit=3)
        tasks = [
            asyncio.create_task(admitted({"type": "http"}, _receive, _noop)) for _ in range(10)
        ]
        await asyncio.sleep(0.05)
        waiting_inside = app.inside
        app.release.set()
        await asyncio.gather(*tasks)
        return waiting_inside, app.most

    inside, most = asyncio.run(run())
    assert inside == 3 and most == 3


def test_the_turn_is_given_back_when_the_response_starts() -> None:
    async def run() -> int:
        entered = 0
        finish = asyncio.Event()

        async def slow_body(scope: Any, receive: Any, send: Any) -> None:
            nonlocal entered
            entered += 1
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await finish.wait()  # a slow client reading the body
            await send({"type": "http.response.body", "body": b"ok"})

        admitted = Admission(slow_body, limit=1)
        first = asyncio.create_task(admitted({"type": "http"}, _receive, _noop))
        await asyncio.sleep(0.02)
        second = asyncio.create_task(admitted({"type": "http"}, _receive, _noop))
        await asyncio.sleep(0.05)
        both_in = entered  # 2: the first's body is still going out, its turn is back
        finish.set()
        await asyncio.gather(first, second)
        return both_in

    assert asyncio.run(run()) == 2


def test_a_failed_request_gives_its_turn_back() -> None:
    async def run() -> None:
        app = _App(fail=True)
        app.release.set()
        admitted = Admission(app, limit=1)
        for _ in range(3):  # would hang on the second if the first kept its turn
            with pytest.raises(RuntimeError):
                await asyncio.wait_for(admitted({"type": "http"}, _receive, _noop), 2)

    asyncio.run(run())
