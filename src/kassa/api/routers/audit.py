from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query

from kassa.api.auth import kassa_dependency, require
from kassa.api.routers.common import ListParams, list_params, router
from kassa.api.schemas import AuditOut, ListOf
from kassa.bootstrap import Kassa
from kassa.domain.roles import Permission
from kassa.services.context import RequestContext

audit = router("/v1/audit", "audit")


@audit.get("", response_model=ListOf[AuditOut])
def list_audit(
    ctx: Annotated[RequestContext, Depends(require(Permission.READ_AUDIT))],
    kassa: Annotated[Kassa, Depends(kassa_dependency)],
    page: Annotated[ListParams, Depends(list_params)],
    subject: Annotated[str | None, Query(max_length=60)] = None,
    action: Annotated[str | None, Query(max_length=60)] = None,
    actor: Annotated[str | None, Query(max_length=40)] = None,
    actor_user: Annotated[str | None, Query(max_length=40)] = None,
) -> object:
    return kassa.audit.list(
        limit=page.limit,
        starting_after=page.starting_after,
        subject_id=subject,
        action=action,
        actor_key_id=actor,
        actor_user=actor_user,
    )
