"""The sign-in, password and sign-out pages through the TestClient: the cookie's flags, the
double-submit token of the sign-in form, one message for every refusal, throttling shown
as 429, no open redirect, and the one-time password replaced before anything else."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from kassa.api.app import create_app
from kassa.bootstrap import Kassa
from kassa.domain.roles import Role
from kassa.services.context import RequestContext
from tests.conftest import FakeClock
from tests.dashboard.conftest import csrf_of

NEW = "a long and private passphrase"


def _user(kassa: Kassa, role: str = "ops", email: str = "ada@shop.example") -> str:
    _, one_time = kassa.staff_users.create(RequestContext.system("test"), email, Role(role))
    return one_time


def _post_sign_in(client: TestClient, email: str, password: str, next_path: str = "") -> object:
    form = client.get("/dashboard/sign-in")
    return client.post(
        "/dashboard/sign-in",
        data={
            "csrf_token": csrf_of(form.text),
            "email": email,
            "password": password,
            "next": next_path,
        },
        follow_redirects=False,
    )


def test_first_sign_in_goes_to_the_password_page_and_nothing_else_opens_before(
    kassa: Kassa, client: TestClient
) -> None:
    one_time = _user(kassa)
    signed = _post_sign_in(client, "ADA@shop.example", one_time)
    assert signed.status_code == 303 and signed.headers["location"] == "/dashboard/password"
    cookie = signed.headers["set-cookie"]
    assert "kassa_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Path=/dashboard" in cookie and "Secure" not in cookie  # plain http here
    blocked = client.get("/dashboard/orders", follow_redirects=False)
    assert blocked.status_code == 303 and blocked.headers["location"] == "/dashboard/password"
    page = client.get("/dashboard/password")
    assert 'for="new_password">New password' in page.text
    assert 'for="confirm_password">Confirm password' in page.text
    assert "current_password" not in page.text
    mismatch = client.post(
        "/dashboard/password",
        data={"csrf_token": csrf_of(page.text), "new_password": NEW, "confirm_password": NEW + "x"},
        follow_redirects=False,
    )
    assert mismatch.status_code == 422 and "differ" in mismatch.text
    short = client.post(
        "/dashboard/password",
        data={
            "csrf_token": csrf_of(page.text),
            "new_password": "short",
            "confirm_password": "short",
        },
        follow_redirects=False,
    )
    assert short.status_code == 422 and "at least 12" in short.text
    done = client.post(
        "/dashboard/password",
        data={"csrf_token": csrf_of(page.text), "new_password": NEW, "confirm_password": NEW},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    assert client.get("/dashboard/orders", follow_redirects=False).status_code == 200


def test_wrong_password_and_unknown_email_get_the_same_answer(
    kassa: Kassa, client: TestClient
) -> None:
    _user(kassa)
    wrong = _post_sign_in(client, "ada@shop.example", "not it at all")
    unknown = _post_sign_in(client, "nobody@shop.example", "not it at all")
    for answer in (wrong, unknown):
        assert answer.status_code == 401
        assert "Email or password is wrong." in answer.text
        assert "kassa_session=" not in answer.headers.get("set-cookie", "")


def test_the_sign_in_form_needs_its_own_token(kassa: Kassa, client: TestClient) -> None:
    one_time = _user(kassa)
    forged = client.post(
        "/dashboard/sign-in",
        data={"email": "ada@shop.example", "password": one_time},
        follow_redirects=False,
    )
    assert forged.status_code == 403 and "kassa_session=" not in forged.headers.get(
        "set-cookie", ""
    )


def test_the_sixth_failure_in_15_minutes_is_throttled_then_it_lifts(
    kassa: Kassa, client: TestClient, clock: FakeClock
) -> None:
    one_time = _user(kassa)
    for _ in range(5):
        assert _post_sign_in(client, "ada@shop.example", "wrong wrong wrong").status_code == 401
    throttled = _post_sign_in(client, "ada@shop.example", one_time)  # even the right one
    assert throttled.status_code == 429 and "Too many failed sign-ins" in throttled.text
    clock.advance(15 * 60 + 1)
    assert _post_sign_in(client, "ada@shop.example", one_time).status_code == 303


@pytest.mark.parametrize(
    ("asked", "lands"),
    [
        ("/dashboard/customers", "/dashboard/customers"),
        ("https://evil.example/x", "/dashboard/orders"),
        ("//evil.example/x", "/dashboard/orders"),
        ("/dashboard//evil.example", "/dashboard/orders"),
        ("/dashboard/\\evil.example", "/dashboard/orders"),
        ("/v1/orders", "/dashboard/orders"),
    ],
)
def test_after_sign_in_only_a_dashboard_path_is_followed(
    kassa: Kassa, client: TestClient, asked: str, lands: str
) -> None:
    one_time = _user(kassa)
    token, _ = kassa.staff_sessions.sign_in("ada@shop.example", one_time, "test")
    kassa.staff_sessions.change_password(token, None, NEW)
    signed = _post_sign_in(client, "ada@shop.example", NEW, asked)
    assert signed.status_code == 303 and signed.headers["location"] == lands


def test_a_disabled_users_session_ends_at_once(kassa: Kassa, client: TestClient) -> None:
    one_time = _user(kassa)
    token, _ = kassa.staff_sessions.sign_in("ada@shop.example", one_time, "test")
    token, _ = kassa.staff_sessions.change_password(token, None, NEW)
    client.cookies.set("kassa_session", token, path="/dashboard")
    assert client.get("/dashboard/orders", follow_redirects=False).status_code == 200
    kassa.staff_users.disable(RequestContext.system("test"), "ada@shop.example")
    assert client.get("/dashboard/orders", follow_redirects=False).status_code == 303


def test_pages_answer_in_the_readers_locale(kassa: Kassa, client: TestClient) -> None:
    page = client.get("/dashboard/sign-in", headers={"Accept-Language": "de-DE,de;q=0.9"})
    assert re.search(r'<html lang="de">', page.text)


def test_over_https_the_session_cookie_is_secure(kassa: Kassa) -> None:
    """Behind a TLS proxy uvicorn takes the scheme from X-Forwarded-Proto (its
    `forwarded_allow_ips`, 127.0.0.1 unless FORWARDED_ALLOW_IPS says more); here the
    request itself is https."""
    one_time = _user(kassa)
    with TestClient(create_app(kassa), base_url="https://testserver") as secure:
        signed = _post_sign_in(secure, "ada@shop.example", one_time)
    assert signed.status_code == 303
    assert "Secure" in signed.headers["set-cookie"]
