"""A CSV export streamed as an attachment: one home for the response that `GET
/v1/exports/{name}.csv` and the dashboard's export form both answer with.

The part worth sharing is the close. An export holds a database snapshot and writes its
audit record when closed (`services.exports`), so the response closes it however the
stream ends (finished, the client gone, an error), shielded from cancellation, in a
thread-pool hop (closing is blocking I/O). Each adapter passes its own logger, and any
headers of its own, so its answers and its logs stay as they were.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from kassa.services.exports import CsvExport

CSV = "text/csv; charset=utf-8"


class CsvDownload(StreamingResponse):
    """A CSV export streamed as an attachment, closed (and so audited) once the response
    is over, whether it finished or not."""

    def __init__(
        self,
        export: CsvExport,
        *,
        log: logging.Logger,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            iter(export),
            media_type=CSV,
            headers={
                "Content-Disposition": f'attachment; filename="{export.filename}"',
                "Cache-Control": "no-store",  # customer data: no copy in any cache
                **(headers or {}),
            },
        )
        self.export = export
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # shielded: a download cancelled mid-stream still ends its snapshot and audits
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(self._close)

    def _close(self) -> None:
        try:
            self.export.close()
        except Exception:  # the response is gone: all that is left is to say so
            self.log.exception("closing the %s export failed (audit record)", self.export.name)
