"""Invoices and credit notes: JSON, and the PDF and HTML renderings of the frozen document."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query
from starlette.responses import HTMLResponse, Response

from kassa.api.auth import kassa_dependency, require
from kassa.api.problem_docs import problems
from kassa.api.routers.common import ListParams, created_range, list_params, router
from kassa.api.schemas import DocumentOut, ListOf
from kassa.bootstrap import Kassa
from kassa.domain.roles import Permission
from kassa.services.context import RequestContext
from kassa.services.invoices import DOCUMENT_PATHS, DocumentView
from kassa.services.pagination import CreatedRange

documents = router("", "invoices and credit notes")
Core = Annotated[Kassa, Depends(kassa_dependency)]
# A storefront key may read its own orders' documents (the service confines it) ...
Reader = Annotated[RequestContext, Depends(require(Permission.READ_DOCUMENTS))]
# ... but only staff list them.
Lister = Annotated[RequestContext, Depends(require(Permission.LIST_DOCUMENTS))]


def document_out(view: DocumentView) -> DocumentOut:
    """The service's JSON of the document (the same that its `*.issued` event carries)."""
    return DocumentOut.model_validate(view.resource())


def _pdf(body: bytes, number: str) -> Response:
    return Response(
        body,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{number}.pdf"'},
    )


@documents.get(
    "/v1/orders/{order_id}/invoice",
    response_model=DocumentOut,
    responses=problems(404, "order_not_found", "invoice_not_found"),
)
def order_invoice(order_id: str, ctx: Reader, kassa: Core) -> object:
    return document_out(kassa.invoices.invoice_of(ctx, order_id))


@documents.get(
    "/v1/orders/{order_id}/credit-notes",
    response_model=ListOf[DocumentOut],
    responses=problems(404, "order_not_found"),
)
def order_credit_notes(order_id: str, ctx: Reader, kassa: Core) -> object:
    notes = kassa.invoices.credit_notes_of(ctx, order_id)
    return {"data": [document_out(view) for view in notes], "has_more": False}


def _document_routes(kind: str, path: str, label: str) -> None:
    """GET {path}/{id}.pdf, .html and the JSON, for one kind of document. The suffixed
    routes come first: `{document_id}` alone would also match "inv_x.pdf"."""

    def pdf(document_id: str, ctx: Reader, kassa: Core) -> Response:
        rendered = kassa.invoices.pdf(ctx, document_id, kind)
        return _pdf(rendered.body, rendered.number)

    def html(document_id: str, ctx: Reader, kassa: Core) -> HTMLResponse:
        return HTMLResponse(kassa.invoices.html(ctx, document_id, kind))

    def one(document_id: str, ctx: Reader, kassa: Core) -> object:
        return document_out(kassa.invoices.get(ctx, document_id, kind))

    def listed(
        ctx: Lister,
        kassa: Core,
        page: Annotated[ListParams, Depends(list_params)],
        created: Annotated[CreatedRange, Depends(created_range)],
        order: Annotated[str | None, Query(max_length=40)] = None,
    ) -> object:
        found = kassa.invoices.list(
            kind, limit=page.limit, starting_after=page.starting_after, order=order, created=created
        )
        return found.map(document_out)

    documents.get(
        path,
        response_model=ListOf[DocumentOut],
        summary=f"List {label}s (newest first; `created` is when it was issued)",
    )(listed)
    missing = problems(404, f"{kind}_not_found")
    documents.get(
        path + "/{document_id}.pdf",
        response_class=Response,
        summary=f"The {label} as PDF",
        responses={200: {"content": {"application/pdf": {}}}, **missing},
    )(pdf)
    documents.get(
        path + "/{document_id}.html",
        response_class=HTMLResponse,
        summary=f"The {label} as HTML",
        responses=missing,
    )(html)
    documents.get(
        path + "/{document_id}", response_model=DocumentOut, summary=f"A {label}", responses=missing
    )(one)


for _kind, _path in DOCUMENT_PATHS.items():
    _document_routes(_kind, _path, _kind.replace("_", " "))
