"""Text that can be stored: no NUL characters (PostgreSQL refuses them) and valid UTF-8."""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from kassa.api.problems import problem_response


def is_storable_text(value: str) -> bool:
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class RejectUnstorableText:
    """Answers 400 for a path or query string holding text no database could store.

    Such values would otherwise reach a query as parameters and fail inside the driver.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._acceptable(scope):
            response = problem_response(
                400, "invalid_characters", "the URL contains a NUL character or invalid text"
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    @staticmethod
    def _acceptable(scope: Scope) -> bool:
        if not is_storable_text(scope.get("path", "")):
            return False
        raw = scope.get("query_string", b"")
        try:
            pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, errors="strict")
        except UnicodeDecodeError:  # raw bytes or %-escapes that are not UTF-8
            return False
        return all(is_storable_text(k) and is_storable_text(v) for k, v in pairs)
