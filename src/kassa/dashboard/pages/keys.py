"""API keys (admin only): the keys, a new one (its secret shown once, on the page that
answers the form, and never again: only its hash is stored), and revoking one after a
confirmation, through `kassa.api_keys` as `kassa keys create|list|revoke` does.

A revoke takes effect at once in every process (see `services.api_keys`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import Response

from kassa.dashboard.auth import Posted, Staff, allowed, posting
from kassa.dashboard.once import first_sending
from kassa.dashboard.pages.common import page_router, too_long
from kassa.dashboard.web import redirect, render
from kassa.domain.errors import DomainError
from kassa.domain.roles import Role
from kassa.services.api_keys import ApiKeyView

router = page_router()
ROLES = tuple(role.value for role in Role)
MAX_NAME = 200  # as the API's and the CLI's
NOTICES = {"revoked": "The key is revoked: it no longer opens anything."}


def _keys_page(
    request: Request,
    staff: Staff,
    *,
    notice: str = "",
    error: str = "",
    name: str = "",
    role: str = "",
    status: int = 200,
) -> Response:
    keys = staff.kassa.api_keys.list()
    keys.reverse()  # newest first
    return render(
        request,
        staff.viewer,
        "keys.html.j2",
        {
            "keys": keys,
            "roles": ROLES,
            "notice": NOTICES.get(notice, ""),
            "error": error,
            "name": name,
            "role": role,
            "max_name": MAX_NAME,
        },
        status=status,
    )


@router.get("/keys")
def keys_list(
    request: Request, staff: Annotated[Staff, Depends(allowed(None))], notice: str = ""
) -> Response:
    return _keys_page(request, staff, notice=notice)


@router.post("/keys")
def create_key(request: Request, posted: Annotated[Posted, Depends(posting(None))]) -> Response:
    """Create the key and answer with its secret: this page is the only place it shows."""
    staff = posted.staff
    name, role = posted.text("name"), posted.text("role")
    if error := too_long("name", name, MAX_NAME):
        return _keys_page(request, staff, error=error, name=name, role=role, status=422)
    sending = first_sending(request, posted, what="API key", listing=("/keys", "API keys"))
    if isinstance(sending, Response):
        return sending
    try:
        key, secret = staff.kassa.api_keys.create(staff.ctx, role, name)
    except DomainError as exc:
        sending.refused()
        return _keys_page(request, staff, error=exc.detail, name=name, role=role, status=422)
    sending.made(key.id)
    return render(request, staff.viewer, "key_created.html.j2", {"key": key, "secret": secret})


def _key(staff: Staff, key_id: str) -> ApiKeyView:
    for key in staff.kassa.api_keys.list():
        if key.id == key_id:
            return key
    raise staff.refuse(404, f"There is no API key {key_id}.")


@router.get("/keys/{key_id}/revoke")
def revoke_page(
    request: Request, key_id: str, staff: Annotated[Staff, Depends(allowed(None))]
) -> Response:
    return render(request, staff.viewer, "key_revoke.html.j2", {"key": _key(staff, key_id)})


@router.post("/keys/{key_id}/revoke")
def revoke(key_id: str, posted: Annotated[Posted, Depends(posting(None))]) -> Response:
    staff = posted.staff
    try:
        staff.kassa.api_keys.revoke(staff.ctx, key_id)
    except DomainError as exc:
        raise staff.refuse(404, f"There is no API key {key_id}.") from exc
    return redirect("/keys", notice="revoked")
