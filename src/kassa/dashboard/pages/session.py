"""Signing in, replacing the one-time password, signing out.

The session cookie is HttpOnly (no script reads it), SameSite=Lax (another site's form
post does not carry it), Secure when the request came over HTTPS, and scoped to
/dashboard (API calls never carry it). Its value is a random token; the database keeps
only its hash (`services/staff_sessions.py`).

The sign-in form has no session to hold a CSRF token, so it uses a double-submit cookie:
a random value set with the form (SameSite=Strict) that the post must repeat.
"""

from __future__ import annotations

import secrets
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from kassa.dashboard.auth import (
    CSRF_FIELD,
    PASSWORD_PATH,
    Posted,
    SignInNeeded,
    Staff,
    form_fields,
    kassa_of,
    posting_signed_in,
    signed_in,
    tokens_match,
    viewer_for,
)
from kassa.dashboard.pages.common import page_router
from kassa.dashboard.web import PREFIX, redirect, render
from kassa.services.staff_sessions import (
    SESSION_COOKIE,
    PasswordRejected,
    SessionEnded,
    SignInRefused,
    SignInThrottled,
)

router = page_router()
SIGN_IN_COOKIE = "kassa_sign_in"
HOME = "/orders"


def _safe_next(value: str) -> str:
    """Where to go after signing in: a dashboard path on this host, nothing else (an open
    redirect would let a link to kassa's sign-in page forward a user anywhere)."""
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not value.startswith(PREFIX + "/") or "\\" in value:
        return HOME
    path = value[len(PREFIX) :]
    return path if not path.startswith("//") else HOME


def _set_session(response: Response, request: Request, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path=PREFIX,
    )


def _sign_in_page(
    request: Request, *, message: str = "", email: str = "", next_path: str = "", status: int = 200
) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    response = render(
        request,
        viewer_for(request, None, token),
        "sign_in.html.j2",
        {"message": message, "email": email, "next_path": next_path},
        status=status,
    )
    response.set_cookie(
        SIGN_IN_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path=PREFIX + "/sign-in",
    )
    return response


@router.get("/")
def home() -> Response:
    return redirect(HOME)


@router.get("/sign-in")
def sign_in_form(request: Request, next: str = "") -> HTMLResponse:
    return _sign_in_page(request, next_path=next)


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    form = await form_fields(request)
    email, password = form.get("email", "").strip(), form.get("password", "")
    next_path = form.get("next", "")
    if not tokens_match(form.get(CSRF_FIELD, ""), request.cookies.get(SIGN_IN_COOKIE, "")):
        return _sign_in_page(
            request,
            message="This form has expired. Sign in again.",
            email=email,
            next_path=next_path,
            status=403,
        )
    client = request.client.host if request.client else "unknown"
    core = kassa_of(request)
    try:
        token, session = await run_in_threadpool(
            core.staff_sessions.sign_in, email, password, client
        )
    except SignInThrottled as exc:
        minutes = max(1, -(-exc.retry_after_s // 60))
        return _sign_in_page(
            request,
            message=f"Too many failed sign-ins. Try again in {minutes} minutes.",
            email=email,
            next_path=next_path,
            status=429,
        )
    except SignInRefused:
        return _sign_in_page(
            request,
            message="Email or password is wrong.",
            email=email,
            next_path=next_path,
            status=401,
        )
    response = redirect(PASSWORD_PATH if session.must_change_password else _safe_next(next_path))
    _set_session(response, request, token)
    response.delete_cookie(SIGN_IN_COOKIE, path=PREFIX + "/sign-in")
    return response


def _password_page(
    request: Request, staff: Staff, message: str = "", status: int = 200
) -> Response:
    return render(
        request,
        staff.viewer,
        "password.html.j2",
        {"message": message, "forced": staff.session.must_change_password},
        status=status,
    )


@router.get(PASSWORD_PATH)
def password_form(request: Request, staff: Annotated[Staff, Depends(signed_in)]) -> Response:
    return _password_page(request, staff)


@router.post(PASSWORD_PATH)
def change_password(
    request: Request, posted: Annotated[Posted, Depends(posting_signed_in)]
) -> Response:
    staff = posted.staff
    new, confirm = posted.form.get("new_password", ""), posted.form.get("confirm_password", "")
    current = (
        None if staff.session.must_change_password else posted.form.get("current_password", "")
    )
    if new != confirm:
        return _password_page(request, staff, "The two new passwords differ.", 422)
    try:
        token, _session = staff.kassa.staff_sessions.change_password(staff.token, current, new)
    except PasswordRejected as exc:
        return _password_page(request, staff, exc.detail[:1].upper() + exc.detail[1:] + ".", 422)
    except SessionEnded:
        raise SignInNeeded(PREFIX + HOME) from None
    response = redirect(HOME, notice="password_changed")
    _set_session(response, request, token)
    return response


@router.post("/sign-out")
def sign_out(posted: Annotated[Posted, Depends(posting_signed_in)]) -> Response:
    posted.staff.kassa.staff_sessions.sign_out(posted.staff.token)
    response = redirect("/sign-in")
    response.delete_cookie(SESSION_COOKIE, path=PREFIX)
    return response
