"""Admission: at most `MAX_IN_FLIGHT` requests do their work at once; the rest wait their
turn in the event loop, where waiting costs nothing.

Why: a request may hold a database transaction across more than one hop to the thread
pool. An idempotent request whose effect is local keeps claim, effect and answer in one
transaction, held from the endpoint's hop, through FastAPI's hop that validates the
response, to the hop that stores the answer and commits. A pay holds its settlement the
same way. While it is held, other requests wait on what it locked (SQLite's write lock,
a row, the unique index of the same Idempotency-Key), each waiting *inside* a pool
thread and on a pooled connection. Once those waiters fill the thread pool (40 threads)
or the connection pool (30 connections), the holder cannot get the thread it needs to
commit: every request stalls until the busy timeout or the pool timeout (30 s), then
fails (seen: 50 concurrent identical POSTs on SQLite, half of them 500 or 503).

With fewer requests in flight than there are threads and connections, a holder always
finds both. The limit is left below the smaller pool by a margin for the embedded
worker's thread and connection and for requests that need no database.

The turn is given back when the response starts (the work that needs the pools is done
by then), or when the request ends without one.
"""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Below anyio's 40 threads and the engine's 30 connections (storage.database.make_engine).
MAX_IN_FLIGHT = 24


class Admission:
    def __init__(self, app: ASGIApp, limit: int = MAX_IN_FLIGHT) -> None:
        self.app = app
        self.limit = limit
        # made in the event loop that serves (a test may serve the same app from another)
        self._turns: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        if self._turns is None or self._loop is not loop:
            self._turns, self._loop = asyncio.Semaphore(self.limit), loop
        turns = self._turns
        await turns.acquire()
        held = True

        def give_back() -> None:
            nonlocal held
            if held:
                held = False
                turns.release()

        async def send_and_give_back(message: Message) -> None:
            if message["type"] == "http.response.start":
                give_back()
            await send(message)

        try:
            await self.app(scope, receive, send_and_give_back)
        finally:
            give_back()
