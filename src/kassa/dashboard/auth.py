"""Who is signed in to the dashboard, what they may do, and the CSRF check of every form.

A page asks for `signed_in` (any staff user) or `allowed(permission)`; a form handler asks
for `posting(permission)`, which also checks the form's CSRF token against the session's
(a synchronizer token: random per session, rotated with it, compared in constant time).
The sign-in form, which has no session yet, uses a double-submit cookie instead.

The outcomes are exceptions that `dashboard.app` turns into pages: no session → to the
sign-in page; a one-time password not yet replaced → to the password page; a role that
lacks the permission, or a form without its token → 403.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from kassa.bootstrap import Kassa
from kassa.dashboard import formatting
from kassa.dashboard.web import PREFIX, Viewer, may
from kassa.domain.roles import Permission
from kassa.services.context import RequestContext
from kassa.services.staff_sessions import SESSION_COOKIE, StaffSession

CSRF_FIELD = "csrf_token"
PASSWORD_PATH = "/password"


class SignInNeeded(Exception):
    """No valid session: the reader is sent to sign in, and back to `next_path` after."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class PasswordChangeNeeded(Exception):
    """Signed in with a one-time password: nothing else until a new one is set."""


class PageRefused(Exception):
    """403 or 404, shown as a page to the signed-in `viewer`."""

    def __init__(self, status: int, message: str, viewer: Viewer) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.viewer = viewer


def kassa_of(request: Request) -> Kassa:
    core: Kassa = request.app.state.kassa
    return core


def viewer_for(request: Request, session: StaffSession | None, csrf: str = "") -> Viewer:
    core = kassa_of(request)
    return Viewer(
        role=session.user.role if session else None,
        email=session.user.email if session else None,
        csrf=session.csrf_token if session else csrf,
        locale=formatting.negotiate_locale(request.headers.get("accept-language")),
        zone=ZoneInfo(core.settings.timezone),
    )


@dataclass(frozen=True, slots=True)
class Staff:
    """The signed-in user of this request: their session, how they read, and the context
    that services audit their actions with (`actor_user`)."""

    session: StaffSession
    token: str
    viewer: Viewer
    ctx: RequestContext
    kassa: Kassa

    def refuse(self, status: int, message: str) -> PageRefused:
        return PageRefused(status, message, self.viewer)


async def signed_in(request: Request) -> Staff:
    core = kassa_of(request)
    token = request.cookies.get(SESSION_COOKIE, "")
    session = await run_in_threadpool(core.staff_sessions.resolve, token) if token else None
    if session is None:
        raise SignInNeeded(request.url.path)
    if session.must_change_password and request.url.path != PREFIX + PASSWORD_PATH:
        raise PasswordChangeNeeded()
    request_id = getattr(request.state, "request_id", None)
    return Staff(session, token, viewer_for(request, session), session.context(request_id), core)


def allowed(permission: Permission | None) -> Callable[..., Awaitable[Staff]]:
    """A page or action for the roles holding `permission` (None: admin only)."""

    async def check(staff: Staff = Depends(signed_in)) -> Staff:
        if not may(staff.session.user.role, permission):
            what = permission.value.replace("_", " ") if permission else "manage this"
            raise staff.refuse(403, f"Your role ({staff.session.user.role}) may not {what}.")
        return staff

    return check


@dataclass(frozen=True, slots=True)
class Posted:
    staff: Staff
    form: dict[str, str]

    def text(self, name: str, default: str = "") -> str:
        return self.form.get(name, default).strip()


async def form_fields(request: Request) -> dict[str, str]:
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str)}


def posting(permission: Permission | None) -> Callable[..., Awaitable[Posted]]:
    """A form handler: the permission first, then the form's CSRF token."""
    guard = allowed(permission)

    async def check(request: Request, staff: Staff = Depends(guard)) -> Posted:
        return await _checked_form(request, staff)

    return check


async def posting_signed_in(request: Request, staff: Staff = Depends(signed_in)) -> Posted:
    """A form any signed-in user may post (sign out, change password), CSRF checked."""
    return await _checked_form(request, staff)


async def _checked_form(request: Request, staff: Staff) -> Posted:
    form = await form_fields(request)
    if not tokens_match(form.get(CSRF_FIELD, ""), staff.session.csrf_token):
        raise staff.refuse(403, "This form has expired or was not sent by kassa. Reload the page.")
    return Posted(staff, form)


def tokens_match(sent: str, expected: str) -> bool:
    return bool(sent) and bool(expected) and hmac.compare_digest(sent, expected)
