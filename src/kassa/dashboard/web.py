"""Rendering the dashboard's pages: one Jinja2 environment, the headers every page carries,
and the few functions templates call (money, times, permissions).

Every page is answered with a Content-Security-Policy that allows this origin only and no
inline script, so a page can load nothing from another host (the dashboard works offline)
and an injected `<script>` would not run even if escaping ever failed. Pages are never
cached (`no-store`): they show money and personal data.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from kassa.dashboard import formatting
from kassa.domain.roles import Permission, Role, allows

PREFIX = "/dashboard"
STATIC_DIR = Path(__file__).parent / "static"
TEMPLATES_DIR = Path(__file__).parent / "templates"

CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


@dataclass(frozen=True, slots=True)
class NavItem:
    path: str
    label: str
    permission: Permission | None  # None: admin only (users)


# The navigation, in order; a role sees only what it may open.
NAV = (
    NavItem("/orders", "Orders", Permission.READ_ORDERS),
    NavItem("/customers", "Customers", Permission.READ_CUSTOMERS),
    NavItem("/payments", "Payments", Permission.READ_GATEWAYS),
    NavItem("/revenue", "Revenue", Permission.READ_ANALYTICS),
    NavItem("/findings", "Findings", Permission.READ_FINDINGS),
    NavItem("/webhooks", "Webhooks", Permission.MANAGE_WEBHOOKS),
    NavItem("/exports", "Exports", Permission.EXPORT_DATA),
    NavItem("/audit", "Audit log", Permission.READ_AUDIT),
    NavItem("/keys", "API keys", None),
    NavItem("/users", "Users", None),
)

_env = Environment(
    loader=FileSystemLoader(TEMPLATES_DIR),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


# A fresh random token for each create form rendered (`{{ m.once() }}`): see
# `dashboard/once.py`.
FORM_TOKEN = "form_token"
_env.globals["new_form_token"] = lambda: secrets.token_urlsafe(24)


def may(role: Role | None, permission: Permission | None) -> bool:
    """Whether `role` may use a control guarded by `permission` (None: admin only)."""
    if role is None:
        return False
    if permission is None:
        return role is Role.ADMIN
    return allows(role, permission)


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who reads the page, and how they read money and time."""

    role: Role | None
    email: str | None
    csrf: str
    locale: str
    zone: ZoneInfo

    def money(self, amount: int | None, currency: str) -> str:
        return "" if amount is None else formatting.money(amount, currency, self.locale)

    def major(self, amount: int, currency: str) -> str:
        return formatting.major_input(amount, currency, self.locale)

    def when(self, moment: Any) -> str:
        return formatting.when(moment, self.zone, self.locale)

    def iso(self, moment: Any) -> str:
        return formatting.iso_local(moment, self.zone)

    def can(self, permission: Permission | None) -> bool:
        return may(self.role, permission)

    def nav(self) -> list[NavItem]:
        return [item for item in NAV if self.can(item.permission)]


def render(
    request: Request,
    viewer: Viewer,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
) -> HTMLResponse:
    html = _env.get_template(template).render(
        viewer=viewer,
        P=Permission,
        prefix=PREFIX,
        path=request.url.path,
        **(context or {}),
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def redirect(path: str, **query: str) -> RedirectResponse:
    """303 See Other to a dashboard path (after a form post: Post/Redirect/Get)."""
    from urllib.parse import urlencode

    target = PREFIX + path + (("?" + urlencode(query)) if query else "")
    return RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)
