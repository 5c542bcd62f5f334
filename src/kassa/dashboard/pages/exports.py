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

from fastapi import Depends, Request
from fastapi.responses import Response

from kassa.dashboard.auth import Posted, Staff, allowed, posting
from kassa.dashboard.pages.common import page_router, refused_status
from kassa.dashboard.web import render
from kassa.domain.calendar import Window
from kassa.domain.errors import DomainError
from kassa.domain.roles import Permission
from kassa.web.downloads import CsvDownload

log = logging.getLogger("kassa.dashboard")

router = page_router()
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
        status = refused_status(exc)
        return _page(
            request, staff, window=window, from_=from_, to=to, error=exc.detail, status=status
        )
    # the API's response (kassa.web.downloads), plus nosniff: a browser opens this one
    return CsvDownload(export, log=log, headers={"X-Content-Type-Options": "nosniff"})
