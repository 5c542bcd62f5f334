"""The customers, customer, payments and revenue pages in chromium: each loads signed in
with no console error and no request to another host (the page guard), passes axe-core,
and is saved as a screenshot; an admin adjusts a wallet through the form and sees the new
balance; an analyst sees no adjust control and is refused if they post anyway."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Page, expect

from kassa.bootstrap import Kassa
from kassa.domain.roles import Role
from kassa.services.context import RequestContext
from kassa.services.staff_sessions import SESSION_COOKIE
from tests.browser.support import PageGuard, Served, assert_accessible
from tests.builders import customer, make_product, order, paid_order, pay
from tests.conftest import FakeClock, Keys

PASSWORD = "correct horse battery staple"
DAY = 86400
Screenshot = Callable[[Page, str], Path]


def _sign_in(page: Page, served: Served, role: str) -> None:
    """A staff user of `role` with their own password, signed in: the browser holds the
    session cookie as the sign-in page would set it (the sign-in form has its own tests)."""
    kassa = served.kassa
    email = f"{role}@shop.example"
    _, one_time = kassa.staff_users.create(RequestContext.system("test"), email, Role(role))
    token, _ = kassa.staff_sessions.sign_in(email, one_time, "browser")
    token, _ = kassa.staff_sessions.change_password(token, one_time, PASSWORD)
    page.context.add_cookies(
        [
            {
                "name": SESSION_COOKIE,
                "value": token,
                "url": served.url + "/dashboard",
                "httpOnly": True,
                "sameSite": "Lax",
            }
        ]
    )


@pytest.fixture
def shop(client: TestClient, keys: Keys, clock: FakeClock) -> str:
    """A customer with €50.00 in their wallet and paid orders on each of the last ten
    days (so the charts have a series to show), and a payment that was recovered by a
    retry; the customer's id. The clock ends where it began."""
    make_product(client, keys, unit_amount=1250)
    for email, name in (("ana@example.com", "Ana Lima"), ("sam@example.com", "Sam Berg")):
        made = client.post(
            "/v1/customers", json={"email": email, "name": name}, headers=keys.headers("ops")
        )
        assert made.status_code == 201, made.text
    cus = customer(client, keys, email="jo@example.com")
    clock.advance(-DAY * 9)
    for day in range(10):
        for _ in range(1 + day % 3):
            paid_order(client, keys, customer=cus)
        if day < 9:
            clock.advance(DAY)
    r = client.post(
        f"/v1/customers/{cus}/wallet/top-ups",
        json={"amount": 5000, "currency": "EUR", "payment_method": "pm_card_visa"},
        headers=keys.headers("ops"),
    )
    assert r.status_code == 201, r.text
    retried = order(client, keys)
    pay(client, keys, retried["id"], payment_method="pm_card_visa|api_error")
    return cus


def test_the_money_pages_load_from_kassa_alone_and_are_accessible(
    page: Page, served: Served, shop: str, screenshot: Screenshot
) -> None:
    _sign_in(page, served, "admin")
    for name, path, heading in (
        ("customers", "/dashboard/customers", "Customers"),
        ("customer", f"/dashboard/customers/{shop}", "jo@example.com"),
        ("payments", "/dashboard/payments", "Payments"),
        ("revenue", "/dashboard/revenue", "Revenue"),
    ):
        response = page.goto(path)
        assert response is not None and response.status == 200, (path, response)
        expect(page.get_by_role("heading", level=1)).to_have_text(heading)
        page.wait_for_load_state("networkidle")
        assert_accessible(page, name)
        screenshot(page, name)
    chart = page.get_by_role("img", name=re.compile(r"^Net sales per day in EUR"))
    expect(chart).to_be_visible()
    page.get_by_text("The daily figures in EUR as a table").click()
    expect(page.get_by_role("table", name="Daily figures in EUR")).to_be_visible()
    assert_accessible(page, "revenue with its table open")


def test_an_admin_adjusts_a_wallet_through_the_form_and_sees_the_new_balance(
    page: Page, served: Served, shop: str, kassa: Kassa
) -> None:
    _sign_in(page, served, "admin")
    page.goto(f"/dashboard/customers/{shop}")
    page.get_by_label("Currency").select_option("EUR")
    page.get_by_label("New balance").fill("12.50")
    page.get_by_label("Reason").fill("goodwill after a late delivery")
    page.get_by_role("button", name="Review adjustment").click()

    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Adjust the EUR balance of jo@example.com?"
    )
    expect(page.locator("dl.facts")).to_contain_text("€50.00")
    assert_accessible(page, "the adjustment's confirmation")
    page.get_by_role("button", name="Set balance to €12.50").click()

    expect(page.get_by_role("status")).to_have_text("The balance is adjusted.")
    balances = page.get_by_role("table", name="Wallet balances per currency")
    expect(balances.get_by_role("row", name=re.compile("EUR"))).to_contain_text("€12.50")
    ledger = page.get_by_role("table", name="Wallet ledger entries, newest first")
    expect(ledger.get_by_role("row").nth(1)).to_contain_text("goodwill after a late delivery")
    expect(ledger.get_by_role("row").nth(1)).to_contain_text("-€37.50")
    assert kassa.wallets.view(shop).balances == {"EUR": 1250}


def test_an_analyst_sees_no_adjust_control_and_is_refused_if_they_post_anyway(
    page: Page, served: Served, shop: str, kassa: Kassa, page_guard: PageGuard
) -> None:
    _sign_in(page, served, "analyst")
    page.goto(f"/dashboard/customers/{shop}")
    expect(page.get_by_role("heading", level=1)).to_have_text("jo@example.com")
    expect(page.get_by_role("heading", name="Adjust balance")).to_have_count(0)
    expect(page.get_by_label("New balance")).to_have_count(0)
    expect(page.get_by_role("button", name="Review adjustment")).to_have_count(0)

    csrf = page.locator('input[name="csrf_token"]').first.get_attribute("value") or ""
    posted = page.request.post(
        f"/dashboard/customers/{shop}/adjust",
        form={
            "csrf_token": csrf,
            "currency": "EUR",
            "balance": "999.00",
            "reason": "x",
            "old": "5000",
        },
    )
    assert posted.status == 403, posted.text()
    page_guard.allow_console(r"403 \(Forbidden\)")
    refused = page.goto(f"/dashboard/customers/{shop}/adjust?currency=EUR&balance=1&reason=x")
    assert refused is not None and refused.status == 403
    expect(page.get_by_role("alert")).to_contain_text("may not adjust wallets")
    assert kassa.wallets.view(shop).balances == {"EUR": 5000}
