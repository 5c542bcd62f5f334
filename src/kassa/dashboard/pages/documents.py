"""An order's invoice and credit notes, as HTML and PDF, for a signed-in reader: the same
rendering the API serves (`kassa.invoices.html` / `.pdf`).

The HTML is the document's own page, not a dashboard page: it carries its own inline
styles, so it gets its own policy: no script at all, nothing from another host.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.responses import HTMLResponse, Response

from kassa.dashboard.auth import Staff, allowed
from kassa.dashboard.pages.common import page_router
from kassa.domain.errors import DomainError
from kassa.domain.roles import Permission

router = page_router()
KINDS = ("invoice", "credit_note")
DOCUMENT_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


@router.get("/documents/{kind}/{name}")
def document(
    kind: str, name: str, staff: Annotated[Staff, Depends(allowed(Permission.READ_DOCUMENTS))]
) -> Response:
    document_id, _, suffix = name.partition(".")
    if kind not in KINDS or suffix not in ("", "pdf"):
        raise staff.refuse(404, "There is no such document.")
    headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    try:
        if suffix == "pdf":
            file = staff.kassa.invoices.pdf(staff.ctx, document_id, kind)
            headers["Content-Disposition"] = f'inline; filename="{file.number}.pdf"'
            return Response(file.body, media_type="application/pdf", headers=headers)
        html = staff.kassa.invoices.html(staff.ctx, document_id, kind)
    except DomainError as exc:
        raise staff.refuse(404, "There is no such document.") from exc
    return HTMLResponse(html, headers={**headers, "Content-Security-Policy": DOCUMENT_CSP})
