"""The staff dashboard in headless Chromium, as staff use it (issue 13's Must show): sign in
with a one-time password and replace it; find an order by its number; read its payment's
attempt timeline; refund part of it through the form and see the refund and its credit
note; fulfil an order; what an analyst sees and may not do; a form without its CSRF token;
signing out. Every page is checked by the guard (no console error, no other host) and by
axe-core, and saved as a screenshot (`make screenshots` writes them to docs/screenshots).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from playwright.sync_api import Page, expect

from kassa.bootstrap import Kassa
from kassa.domain.roles import Role
from kassa.services.context import RequestContext
from kassa.worker import Worker
from tests.browser.support import PageGuard, Served, assert_accessible
from tests.builders import make_product, order, pay
from tests.conftest import Keys

Shot = Callable[[Page, str], Path]
NEW_PASSWORD = "a long and private passphrase"


def staff_user(kassa: Kassa, role: str, email: str | None = None) -> tuple[str, str]:
    """A staff user of `role` with a one-time password: (email, password)."""
    address = email or f"{role}@shop.example"
    _, one_time = kassa.staff_users.create(RequestContext.system("test"), address, Role(role))
    return address, one_time


def sign_in(
    page: Page,
    email: str,
    password: str,
    *,
    first_time: bool = True,
    on_password_page: Callable[[Page], object] | None = None,
) -> None:
    """Through the forms, as a person does: the sign-in page, then (first time) the page
    that replaces the one-time password (`on_password_page` looks at it first)."""
    page.goto("/dashboard/orders")
    expect(page).to_have_url(re.compile(r"/dashboard/sign-in\?next="))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()
    if first_time:
        expect(page.get_by_role("heading", name="Choose your password")).to_be_visible()
        if on_password_page is not None:
            on_password_page(page)
        page.get_by_label("New password").fill(NEW_PASSWORD)
        page.get_by_label("Confirm password").fill(NEW_PASSWORD)
        page.get_by_role("button", name="Set password").click()
    expect(page.get_by_role("heading", name="Orders", exact=True)).to_be_visible()


def shop(client: TestClient, keys: Keys) -> list[dict[str, Any]]:
    """A few orders: two paid (one of them after a transient fault, recovered by the
    retry), one pending, newest last."""
    make_product(client, keys, "MUG", title="Enamel mug", unit_amount=1250)
    make_product(client, keys, "TEA", title="Green tea", unit_amount=499)
    placed = []
    for index, (lines, card) in enumerate(
        [
            ((("MUG", 2), ("TEA", 1)), "pm_card_visa|api_error"),
            ((("TEA", 3),), "pm_card_visa"),
            ((("MUG", 1),), None),
        ]
    ):
        made = order(client, keys, lines=lines, email=f"buyer{index}@example.com")
        if card:
            paid = pay(client, keys, made["id"], payment_method=card)
            assert paid["status"] == "succeeded", paid
        placed.append(made)
    return placed


def test_first_sign_in_replaces_the_one_time_password_then_finds_an_order_by_number(
    page: Page,
    served: Served,
    client: TestClient,
    keys: Keys,
    screenshot: Shot,
    page_guard: PageGuard,
) -> None:
    placed = shop(client, keys)
    Worker(served.kassa, name="test-worker").drain()  # the invoices
    email, one_time = staff_user(served.kassa, "ops")
    page.goto("/dashboard/sign-in")
    assert_accessible(page, "sign-in")
    screenshot(page, "sign-in")

    def password_page(shown: Page) -> None:
        assert_accessible(shown, "password")
        screenshot(shown, "password")

    sign_in(page, email, one_time, on_password_page=password_page)
    assert_accessible(page, "orders")
    screenshot(page, "orders")

    number = placed[0]["number"]
    search = page.get_by_role("searchbox")
    search.fill(number.replace("K-", "").lstrip("0"))  # "1" finds K-000001
    search.press("Enter")
    page.get_by_role("link", name=number).click()
    expect(page.get_by_role("heading", name=re.compile(f"Order {number}"))).to_be_visible()

    timeline = page.get_by_role("list", name=re.compile("Attempts of pay_"))
    # create (a transient fault), the same create retried once, then the confirm
    attempts = timeline.get_by_role("listitem")
    expect(attempts).to_have_count(3)
    expect(attempts.nth(0)).to_contain_text("Attempt 1: create_intent → soft failure")
    expect(attempts.nth(0)).to_contain_text("api_error")
    expect(attempts.nth(1)).to_contain_text("Attempt 2: create_intent → succeeded")
    expect(attempts.nth(1)).to_contain_text(re.compile(r"after a \d+ ms wait"))
    expect(attempts.nth(2)).to_contain_text("Attempt 3: confirm_intent → succeeded")
    expect(page.get_by_text("recovered by retry")).to_be_visible()
    assert_accessible(page, "order")
    screenshot(page, "order")

    # the one-time password is spent: signing in with it again fails
    page.context.clear_cookies()
    page.goto("/dashboard/sign-in")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(one_time)
    page_guard.allow_console(r"the server responded with a status of 401 \(Unauthorized\)$")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Email or password is wrong.")


def test_a_partial_refund_through_the_form_shows_the_refund_and_its_credit_note(
    page: Page, served: Served, client: TestClient, keys: Keys, screenshot: Shot
) -> None:
    placed = shop(client, keys)
    number = placed[1]["number"]  # 3 x 4.99 = 14.97 EUR
    email, one_time = staff_user(served.kassa, "ops")
    Worker(served.kassa, name="test-worker").drain()  # what the payment left to do
    sign_in(page, email, one_time)
    page.goto(f"/dashboard/orders/{number}")
    page.get_by_role("link", name="Refund").click()
    amount = page.get_by_label(re.compile(r"^Amount"))
    expect(amount).to_have_value("14.97")  # all that is left, in major units
    amount.fill("3.00")
    page.get_by_label("Reason (optional)").fill("one tea arrived crushed")
    assert_accessible(page, "refund form")
    screenshot(page, "order-refund")
    page.get_by_role("button", name="Refund").click()
    expect(page.get_by_role("status")).to_have_text("The refund was made.")

    Worker(served.kassa, name="test-worker").drain()  # the credit note
    page.reload()
    refunds = page.locator("table", has=page.get_by_role("columnheader", name="Refund"))
    expect(refunds).to_contain_text("€3.00")
    expect(refunds).to_contain_text("succeeded")
    expect(refunds).to_contain_text("one tea arrived crushed")
    expect(page.get_by_text(re.compile(r"Credit note .*€3\.00"))).to_be_visible()
    expect(page.get_by_text(re.compile(r"^Refunded$"))).to_be_visible()
    assert (
        client.get(f"/v1/orders/{placed[1]['id']}", headers=keys.headers("admin")).json()[
            "amount_refunded"
        ]
        == 300
    )


def test_fulfil_asks_first_then_marks_the_order_fulfilled(
    page: Page, served: Served, client: TestClient, keys: Keys
) -> None:
    placed = shop(client, keys)
    number = placed[1]["number"]
    email, one_time = staff_user(served.kassa, "ops")
    sign_in(page, email, one_time)
    page.goto(f"/dashboard/orders/{number}")
    page.get_by_role("link", name="Fulfil").click()
    expect(page.get_by_role("heading", name=f"Fulfil order {number}?")).to_be_visible()
    page.get_by_role("button", name="Fulfil order").click()
    expect(page.get_by_role("status")).to_have_text("The order is fulfilled.")
    expect(page.get_by_role("heading", name=re.compile(f"Order {number}"))).to_contain_text(
        "fulfilled"
    )
    expect(page.get_by_role("link", name="Fulfil")).to_have_count(0)


def test_an_analyst_sees_no_refund_or_key_controls_and_is_refused_if_they_post_anyway(
    page: Page, served: Served, client: TestClient, keys: Keys, page_guard: PageGuard
) -> None:
    placed = shop(client, keys)
    number = placed[1]["number"]
    email, one_time = staff_user(served.kassa, "analyst")
    sign_in(page, email, one_time)
    nav = page.get_by_role("navigation", name="Main")
    for hidden in ("API keys", "Users", "Audit log", "Webhooks"):
        expect(nav.get_by_role("link", name=hidden)).to_have_count(0)
    page.goto(f"/dashboard/orders/{number}")
    for control in ("Refund", "Fulfil", "Cancel order"):
        expect(page.get_by_role("link", name=control)).to_have_count(0)
    csrf = page.locator('input[name="csrf_token"]').first.get_attribute("value")
    assert csrf
    posted = page.request.post(
        f"/dashboard/orders/{number}/refund",
        form={"csrf_token": csrf, "amount": "1.00", "committed": "0"},
        max_redirects=0,
    )
    assert posted.status == 403, posted.text()
    page_guard.allow_console(r"status of 403")
    page.goto(f"/dashboard/orders/{number}/refund")
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()
    assert_accessible(page, "403 page")
    order_now = client.get(f"/v1/orders/{placed[1]['id']}", headers=keys.headers("admin")).json()
    assert order_now["amount_refunded"] == 0


def test_a_form_posted_without_its_csrf_token_is_refused(
    page: Page, served: Served, client: TestClient, keys: Keys
) -> None:
    placed = shop(client, keys)
    number = placed[1]["number"]
    email, one_time = staff_user(served.kassa, "admin")
    sign_in(page, email, one_time)
    for form in ({}, {"csrf_token": "not-the-token"}):
        posted = page.request.post(
            f"/dashboard/orders/{number}/fulfil", form=form or {"x": "1"}, max_redirects=0
        )
        assert posted.status == 403, posted.text()
        assert "This form has expired" in posted.text()
    status = client.get(f"/v1/orders/{placed[1]['id']}", headers=keys.headers("admin")).json()
    assert status["status"] == "paid"


def test_signing_out_ends_the_session(page: Page, served: Served) -> None:
    email, one_time = staff_user(served.kassa, "ops")
    sign_in(page, email, one_time)
    cookie = next(c for c in page.context.cookies() if c["name"] == "kassa_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/dashboard"
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in to kassa")).to_be_visible()
    # the old cookie, replayed, is dead on the server too (not only forgotten by the browser)
    page.context.add_cookies([{**cookie}])  # type: ignore[list-item]
    page.goto("/dashboard/orders")
    expect(page).to_have_url(re.compile(r"/dashboard/sign-in"))


def test_every_page_in_the_menu_loads_clean_and_accessible(
    page: Page, served: Served, client: TestClient, keys: Keys, screenshot: Shot
) -> None:
    """As an admin, who sees every page: each link of the menu, in a real browser, with no
    console error, no request to another host and no serious axe violation."""
    shop(client, keys)
    Worker(served.kassa, name="test-worker").drain()
    email, one_time = staff_user(served.kassa, "admin")
    sign_in(page, email, one_time)
    links = page.get_by_role("navigation", name="Main").get_by_role("link")
    targets = [
        (links.nth(i).inner_text(), links.nth(i).get_attribute("href"))
        for i in range(links.count())
    ]
    assert len(targets) == 10, targets
    for label, href in targets:
        assert href
        response = page.goto(href)
        assert response is not None and response.status == 200, (label, response)
        expect(page.get_by_role("heading", level=1)).to_have_count(1)
        assert_accessible(page, label)
