"""Staff users (admin only): who may sign in, a new user (their one-time password shown
once, on the page that answers the form), and disabling a user or resetting their
password after a confirmation, through `kassa.staff_users` as `kassa users` does.

An admin may not disable or reset themselves here: disabling would lock them out
mid-sentence, and their own password is changed on the password page, which asks for the
current one.
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
from kassa.services.staff_users import STAFF_ROLES, StaffUserView

router = page_router()
ROLES = tuple(role.value for role in STAFF_ROLES)
MAX_EMAIL = 254
ACTIONS = {"disable": "Disable", "reset-password": "Reset the password of"}
NOTICES = {"disabled": "The user is disabled: their sessions have ended and they cannot sign in."}
YOURSELF = {
    "disable": "You cannot disable yourself: ask another admin.",
    "reset-password": "You cannot reset your own password here: change it on the password page.",
}


def _users_page(
    request: Request,
    staff: Staff,
    *,
    notice: str = "",
    error: str = "",
    email: str = "",
    role: str = "",
    status: int = 200,
) -> Response:
    return render(
        request,
        staff.viewer,
        "users.html.j2",
        {
            "users": staff.kassa.staff_users.list(staff.ctx),
            "me": staff.session.user.id,
            "roles": ROLES,
            "notice": NOTICES.get(notice, ""),
            "error": error,
            "email": email,
            "role": role,
            "max_email": MAX_EMAIL,
        },
        status=status,
    )


@router.get("/users")
def users_list(
    request: Request, staff: Annotated[Staff, Depends(allowed(None))], notice: str = ""
) -> Response:
    return _users_page(request, staff, notice=notice)


@router.post("/users")
def create_user(request: Request, posted: Annotated[Posted, Depends(posting(None))]) -> Response:
    """Create the user and answer with their one-time password, shown only here."""
    staff = posted.staff
    email, role = posted.text("email"), posted.text("role")
    if error := too_long("e-mail address", email, MAX_EMAIL):
        return _users_page(request, staff, error=error, email=email, role=role, status=422)
    sending = first_sending(request, posted, what="user", listing=("/users", "users"))
    if isinstance(sending, Response):
        return sending
    try:
        user, password = staff.kassa.staff_users.create(staff.ctx, email, role)
    except DomainError as exc:
        sending.refused()
        status = 409 if exc.code == "email_taken" else 422
        return _users_page(request, staff, error=exc.detail, email=email, role=role, status=status)
    sending.made(user.id)
    return render(
        request,
        staff.viewer,
        "user_password.html.j2",
        {"user": user, "password": password, "created": True},
    )


def _user(staff: Staff, user_id: str) -> StaffUserView:
    try:
        return staff.kassa.staff_users.get(staff.ctx, user_id)
    except DomainError as exc:
        raise staff.refuse(404, f"There is no user {user_id}.") from exc


def _confirm(
    request: Request, staff: Staff, user_id: str, action: str, *, status: int = 200
) -> Response:
    if action not in ACTIONS:
        raise staff.refuse(404, "There is no such page.")
    user = _user(staff, user_id)
    yourself = YOURSELF[action] if user.id == staff.session.user.id else ""
    return render(
        request,
        staff.viewer,
        "user_confirm.html.j2",
        {"user": user, "action": action, "verb": ACTIONS[action], "error": yourself},
        status=409 if yourself and status != 200 else status,
    )


@router.get("/users/{user_id}/{action}")
def confirm_page(
    request: Request, user_id: str, action: str, staff: Annotated[Staff, Depends(allowed(None))]
) -> Response:
    """The question "Disable ada@shop.example?" and the like (or why you may not, about
    yourself)."""
    return _confirm(request, staff, user_id, action)


@router.post("/users/{user_id}/{action}")
def act(
    request: Request,
    user_id: str,
    action: str,
    posted: Annotated[Posted, Depends(posting(None))],
) -> Response:
    staff = posted.staff
    if action not in ACTIONS:
        raise staff.refuse(404, "There is no such page.")
    user = _user(staff, user_id)
    if user.id == staff.session.user.id:
        return _confirm(request, staff, user_id, action, status=409)
    try:
        if action == "disable":
            staff.kassa.staff_users.disable(staff.ctx, user.id)
            return redirect("/users", notice="disabled")
        password = staff.kassa.staff_users.reset_password(staff.ctx, user.id)
    except DomainError as exc:
        raise staff.refuse(404, f"There is no user {user_id}.") from exc
    return render(
        request,
        staff.viewer,
        "user_password.html.j2",
        {"user": user, "password": password, "created": False},
    )
