"""CSV exports: the exports kassa offers, a period, and a download that runs the export
through `kassa.exports` exactly as `GET /v1/exports/{name}.csv` does: the same period
rules, the same snapshot streamed a batch at a time, and the same audit record
(`export.<name>`, the file, its filters, its row count), here with the signed-in user as
actor.

A download writes an audit record, so it is a form post (with its CSRF token) answered
with the CSV as an attachment, never a link a prefetch or a stray click could follow.
"""

from __future__ import annotations

import logging
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from kassa.dashboard.auth import Posted, Staff, allowed, posting
from kassa.dashboard.web import render
from kassa.domain.calendar import Window
from kassa.domain.errors import DomainError, ErrorKind
from kassa.domain.roles import Permission
from kassa.services.exports import CsvExport

log = logging.getLogger("kassa.dashboard")

router = APIRouter()
CSV = "text/csv; charset=utf-8"
CUSTOM = "custom"
# The windows the form offers, in its order, with how the page names them.
WINDOWS = {
    Window.MONTH_TO_DATE.value: "This month so far",
    Window.TODAY.value: "Today",
    Window.YESTERDAY.value: "Yesterday",
    Window.LAST_7_DAYS.value: "Last 7 days",
    Window.LAST_30_DAYS.value: "Last 30 days",
    Window.YEAR_TO_DATE.value: "This year so far",
    CUSTOM: "From and to (below)",
}


class CsvAttachment(StreamingResponse):
    """An export streamed as an attachment and closed (so audited) once the response is
    over, finished or not: the API's `CsvDownload`, which the dashboard may not import."""

    def __init__(self, export: CsvExport) -> None:
        super().__init__(
            iter(export),
            media_type=CSV,
            headers={
                "Content-Disposition": f'attachment; filename="{export.filename}"',
                "Cache-Control": "no-store",  # customer data: no copy in any cache
                "X-Content-Type-Options": "nosniff",
            },
        )
        self.export = export

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
            log.exception("closing the %s export failed (audit record)", self.export.name)


def _page(
    request: Request,
    staff: Staff,
    *,
    window: str = Window.MONTH_TO_DATE.value,
    from_: str = "",
    to: str = "",
    error: str = "",
    status: int = 200,
) -> Response:
    exports = staff.kassa.exports
    return render(
        request,
        staff.viewer,
        "exports.html.j2",
        {
            "exports": [(name, exports.timed(name)) for name in exports.available()],
            "windows": WINDOWS,
            "window": window if window in WINDOWS else Window.MONTH_TO_DATE.value,
            "from_": from_,
            "to": to,
            "error": error,
            "zone": staff.kassa.settings.timezone,
        },
        status=status,
    )


@router.get("/exports")
def exports_page(
    request: Request, staff: Annotated[Staff, Depends(allowed(Permission.EXPORT_DATA))]
) -> Response:
    return _page(request, staff)


@router.post("/exports")
def download(
    request: Request, posted: Annotated[Posted, Depends(posting(Permission.EXPORT_DATA))]
) -> Response:
    """The export named by the button pressed, for the period of the form (a catalogue
    export, which is as of now, ignores it)."""
    staff = posted.staff
    name, window = posted.text("export"), posted.text("window")
    from_, to = posted.text("from"), posted.text("to")
    period: dict[str, str | None] = {"window": None, "from_": None, "to": None}
    if staff.kassa.exports.timed(name):
        if window == CUSTOM or from_ or to:
            period.update(from_=from_ or None, to=to or None)
        else:
            period.update(window=window or None)
    try:
        export = staff.kassa.exports.open(staff.ctx, name, **period)
    except DomainError as exc:
        status = {ErrorKind.NOT_FOUND: 404, ErrorKind.CONFLICT: 409}.get(exc.kind, 422)
        return _page(
            request, staff, window=window, from_=from_, to=to, error=exc.detail, status=status
        )
    return CsvAttachment(export)
