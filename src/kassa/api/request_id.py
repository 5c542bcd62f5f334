"""`X-Request-Id`: every request gets one (the caller's, if it is well formed), echoed on
the response, carried into the audit log and onto every log line written while the
request is served (`kassa.logs.REQUEST_ID`).

A pure ASGI middleware rather than Starlette's `BaseHTTPMiddleware`: that one runs the
rest of the app in a separate task with memory streams between them, which cost more CPU
than the whole of a small request's own work (measured with py-spy for issue 10).
"""

from __future__ import annotations

import re

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kassa.domain.ids import new_id
from kassa.logs import REQUEST_ID

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,80}$")


def _incoming(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            return str(value.decode("latin-1"))
    return ""


class RequestId:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _incoming(scope)
        rid = incoming if _REQUEST_ID.match(incoming) else new_id("req")
        scope.setdefault("state", {})["request_id"] = rid  # request.state.request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["X-Request-Id"] = rid
            await send(message)

        token = REQUEST_ID.set(rid)  # on every log line of this request (kassa.logs)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)
