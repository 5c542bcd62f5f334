"""Dashboard tests through FastAPI's TestClient (the browser tests are in tests/browser).

`staff(role)` makes a staff user of that role, signs them in, replaces their one-time
password as the first sign-in requires, and returns a client holding their session
cookie, with the session's CSRF token for forms."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from kassa.api.app import create_app
from kassa.bootstrap import Kassa
from kassa.domain.roles import Role
from kassa.services.context import RequestContext
from kassa.services.staff_sessions import SESSION_COOKIE

PASSWORD = "correct horse battery staple"


@dataclass
class StaffClient:
    client: TestClient
    csrf: str
    user_id: str
    email: str

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.client.get(path, follow_redirects=False, **kwargs)

    def post(self, path: str, data: dict[str, str] | None = None, **kwargs: Any) -> Any:
        """A form post with the session's CSRF token and, as every form kassa renders, a
        fresh form token (pass csrf_token="" or form_token="" to leave one out)."""
        form = {"csrf_token": self.csrf, "form_token": secrets.token_urlsafe(24), **(data or {})}
        for field in ("csrf_token", "form_token"):
            if form[field] == "":
                del form[field]
        return self.client.post(path, data=form, follow_redirects=False, **kwargs)


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


@pytest.fixture
def staff(kassa: Kassa) -> Iterator[Callable[[str], StaffClient]]:
    clients: list[TestClient] = []

    def make(role: str) -> StaffClient:
        email = f"{role}-{len(clients)}@shop.example"
        user, one_time = kassa.staff_users.create(RequestContext.system("test"), email, Role(role))
        token, _ = kassa.staff_sessions.sign_in(email, one_time, "testclient")
        token, session = kassa.staff_sessions.change_password(token, None, PASSWORD)
        client = TestClient(create_app(kassa))
        client.__enter__()
        clients.append(client)
        client.cookies.set(SESSION_COOKIE, token, path="/dashboard")
        return StaffClient(client, session.csrf_token, user.id, email)

    yield make
    for client in clients:
        client.__exit__(None, None, None)
