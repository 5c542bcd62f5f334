"""The audit log (admin): who did what, newest first, a page at a time, filtered by action,
subject or actor, through `kassa.audit.list` as `GET /v1/audit` reads it.

An actor is an API key (`key_…`, or `cli` / `system`) or a staff user (`usr_…`, acting
through the dashboard); the filter takes either. Orders among the subjects are linked by
their number, all of a page's read at once (`orders.numbers`).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import Response

from kassa.dashboard.auth import Staff, allowed
from kassa.dashboard.pages.common import listed, page_router
from kassa.dashboard.web import render
from kassa.domain.ids import has_prefix
from kassa.domain.roles import Permission

router = page_router()
PAGE_SIZE = 50
MAX_FILTER = 60  # as the API's query parameters


def changes(
    before: dict[str, Any] | None, after: dict[str, Any] | None, request_id: str | None
) -> str:
    """A record's before and after as compact JSON lines, and the request that made it,
    for the page's details."""
    lines = [f"request: {request_id}"] if request_id else []
    if before is not None:
        lines.append("before: " + json.dumps(before, sort_keys=True, default=str))
    if after is not None:
        lines.append("after: " + json.dumps(after, sort_keys=True, default=str))
    return "\n".join(lines)


@router.get("/audit")
def audit_log(
    request: Request,
    staff: Annotated[Staff, Depends(allowed(Permission.READ_AUDIT))],
    action: str = "",
    subject: str = "",
    actor: str = "",
    after: str = "",
) -> Response:
    action, subject, actor = (v.strip()[:MAX_FILTER] for v in (action, subject, actor))
    by_user = has_prefix(actor, "usr")
    records, has_more = listed(
        lambda: staff.kassa.audit.list(
            limit=PAGE_SIZE,
            starting_after=after or None,
            subject_id=subject or None,
            action=action or None,
            actor_key_id=actor if actor and not by_user else None,
            actor_user=actor if by_user else None,
        )
    )
    numbers = staff.kassa.orders.numbers_of(
        staff.ctx, [r.subject_id for r in records if has_prefix(r.subject_id, "ord")]
    )
    return render(
        request,
        staff.viewer,
        "audit.html.j2",
        {
            "records": records,
            "has_more": has_more,
            "numbers": numbers,
            "changes": changes,
            "action": action,
            "subject": subject,
            "actor": actor,
            "filtered": bool(action or subject or actor),
        },
    )
