"""The buyer's e-mails as kassa recorded them (ops and admin keys): what was sent, to whom,
and what is still queued or failed."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query

from kassa.api.auth import kassa_dependency, require
from kassa.api.routers.common import ListParams, list_params, router
from kassa.api.schemas import EmailOut, ListOf
from kassa.bootstrap import Kassa
from kassa.domain.roles import Permission
from kassa.services.context import RequestContext

emails = router("/v1/emails", "emails")
Core = Annotated[Kassa, Depends(kassa_dependency)]


@emails.get("", response_model=ListOf[EmailOut])
def list_emails(
    ctx: Annotated[RequestContext, Depends(require(Permission.READ_EMAILS))],
    kassa: Core,
    page: Annotated[ListParams, Depends(list_params)],
    order: Annotated[str | None, Query(max_length=64)] = None,
) -> object:
    """E-mails to buyers, newest first; `order`: one order's."""
    return kassa.emails.list(limit=page.limit, starting_after=page.starting_after, order=order)
