"""The customers, payments and revenue pages through the TestClient on both databases: a
customer's wallet and orders, the admin's balance adjustment in major units behind its
confirmation (and its guard against a stale or second post), what analysts and ops may
not do, gateway health and recovery, the payments list linked by order number in a fixed
number of queries, and the KPIs with their charts."""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib import import_module

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from kassa.bootstrap import Kassa
from kassa.storage.tables import AuditRecord, WalletBalance, WalletEntry
from tests.builders import customer, make_product, order, paid_order, pay
from tests.conftest import Keys
from tests.dashboard.conftest import StaffClient
from tests.support import statements_sent

Staff = Callable[[str], StaffClient]


def _top_up(client: TestClient, keys: Keys, cus: str, amount: int = 5000) -> None:
    r = client.post(
        f"/v1/customers/{cus}/wallet/top-ups",
        json={"amount": amount, "currency": "EUR", "payment_method": "pm_card_visa"},
        headers=keys.headers("ops"),
    )
    assert r.status_code == 201 and r.json()["status"] == "succeeded", r.text


@pytest.fixture
def buyer(client: TestClient, keys: Keys) -> str:
    """A customer with €50.00 in their wallet and one paid order of €10.00."""
    make_product(client, keys)
    cus = customer(client, keys, email="Buyer@Example.com")
    _top_up(client, keys, cus)
    paid_order(client, keys, customer=cus)
    return cus


def _balance(kassa: Kassa, cus: str) -> int | None:
    with kassa.db.transaction() as session:
        return session.scalar(
            select(WalletBalance.balance).where(
                WalletBalance.customer_id == cus, WalletBalance.currency == "EUR"
            )
        )


def _adjustments(kassa: Kassa) -> int:
    with kassa.db.transaction() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(WalletEntry)
                .where(WalletEntry.kind == "adjustment")
            )
            or 0
        )


# -- customers ----------------------------------------------------------------------------


def test_an_email_search_finds_the_customer_whatever_its_case(
    client: TestClient, keys: Keys, staff: Staff, buyer: str
) -> None:
    customer(client, keys, email="other@example.com")
    analyst = staff("analyst")
    everyone = analyst.get("/dashboard/customers")
    assert everyone.status_code == 200, everyone.text
    listed = everyone.text.lower()  # the address's domain is kept in lower case
    assert "other@example.com" in listed and "buyer@example.com" in listed
    found = analyst.get("/dashboard/customers", params={"q": "buyer@example.COM"})
    assert f'href="/dashboard/customers/{buyer}"' in found.text
    assert "other@example.com" not in found.text
    by_id = analyst.get("/dashboard/customers", params={"q": buyer})
    assert f'href="/dashboard/customers/{buyer}"' in by_id.text
    none = analyst.get("/dashboard/customers", params={"q": "nobody@example.com"})
    assert none.status_code == 200 and "No customer matches" in none.text


def test_the_customers_list_pages_newest_first(
    client: TestClient, keys: Keys, staff: Staff, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(import_module("kassa.dashboard.pages.customers"), "PAGE_SIZE", 2)
    made = [customer(client, keys, email=f"c{i}@example.com") for i in range(3)]
    analyst = staff("analyst")
    first = analyst.get("/dashboard/customers").text
    assert first.index("c2@example.com") < first.index("c1@example.com")
    assert "c0@example.com" not in first
    older = re.search(r'href="(/dashboard/customers\?q=&amp;after=[^"]+)"', first)
    assert older, "no link to older customers"
    second = analyst.get(older.group(1).replace("&amp;", "&")).text
    assert f"/dashboard/customers/{made[0]}" in second and "c2@example.com" not in second


def test_the_customer_page_shows_the_wallet_its_ledger_and_the_orders_by_number(
    client: TestClient, keys: Keys, staff: Staff, buyer: str
) -> None:
    orders = client.get(
        "/v1/orders", params={"customer": buyer}, headers=keys.headers("admin")
    ).json()["data"]
    page = staff("analyst").get(f"/dashboard/customers/{buyer}")
    assert page.status_code == 200, page.text
    assert "buyer@example.com" in page.text.lower()
    assert "€50.00" in page.text  # the balance and the top-up's entry, in major units
    assert "top up" in page.text
    assert f'href="/dashboard/orders/{orders[0]["number"]}"' in page.text
    assert "€10.00" in page.text
    assert staff("analyst").get("/dashboard/customers/cus_nope").status_code == 404


def test_an_admin_adjusts_a_balance_typed_in_major_units_after_confirming_it(
    kassa: Kassa, staff: Staff, buyer: str
) -> None:
    admin = staff("admin")
    page = admin.get(f"/dashboard/customers/{buyer}")
    assert 'id="balance"' in page.text and "Adjust balance" in page.text
    confirm = admin.get(
        f"/dashboard/customers/{buyer}/adjust",
        params={"currency": "EUR", "balance": "12.50", "reason": "goodwill"},
    )
    assert confirm.status_code == 200, confirm.text
    assert "€50.00" in confirm.text and "€12.50" in confirm.text
    assert 'name="old" value="5000"' in confirm.text
    assert _balance(kassa, buyer) == 5000  # the confirmation page changes nothing
    done = admin.post(
        f"/dashboard/customers/{buyer}/adjust",
        {"currency": "EUR", "balance": "12.50", "reason": "goodwill", "old": "5000"},
    )
    assert done.status_code == 303, done.text
    after = admin.get(done.headers["location"])
    assert "The balance is adjusted." in after.text and "€12.50" in after.text
    assert "goodwill" in after.text
    assert _balance(kassa, buyer) == 1250
    with kassa.db.transaction() as session:
        actors = session.scalars(
            select(AuditRecord.actor_user).where(AuditRecord.action == "wallet.adjusted")
        ).all()
    assert actors == [admin.user_id]


@pytest.mark.parametrize(("typed", "minor"), [("-3.00", -300), ("0", 0), ("1,234.5", 123450)])
def test_a_balance_may_be_negative_zero_or_grouped(
    kassa: Kassa, staff: Staff, buyer: str, typed: str, minor: int
) -> None:
    done = staff("admin").post(
        f"/dashboard/customers/{buyer}/adjust",
        {"currency": "EUR", "balance": typed, "reason": "fix", "old": "5000"},
    )
    assert done.status_code == 303, done.text
    assert _balance(kassa, buyer) == minor


def test_a_german_reader_types_and_reads_the_balance_as_german_writes_it(
    kassa: Kassa, staff: Staff, buyer: str
) -> None:
    admin, german = staff("admin"), {"accept-language": "de-DE,de;q=0.9"}
    form = {"currency": "EUR", "balance": "1.234,50", "reason": "Kulanz"}
    confirm = admin.get(f"/dashboard/customers/{buyer}/adjust", params=form, headers=german)
    assert confirm.status_code == 200, confirm.text
    assert "1.234,50\xa0€" in confirm.text and 'name="balance" value="1234,50"' in confirm.text
    done = admin.post(
        f"/dashboard/customers/{buyer}/adjust",
        {**form, "balance": "1234,50", "old": "5000"},
        headers=german,
    )
    assert done.status_code == 303, done.text
    assert _balance(kassa, buyer) == 123450


def test_a_stale_confirmation_or_the_same_form_posted_twice_changes_nothing(
    kassa: Kassa, client: TestClient, keys: Keys, staff: Staff, buyer: str
) -> None:
    admin = staff("admin")
    form = {"currency": "EUR", "balance": "20.00", "reason": "goodwill", "old": "5000"}
    assert admin.post(f"/dashboard/customers/{buyer}/adjust", form).status_code == 303
    again = admin.post(f"/dashboard/customers/{buyer}/adjust", form)
    assert again.status_code == 409, again.text
    assert "changed since this adjustment was confirmed" in again.text
    _top_up(client, keys, buyer, 100)  # the wallet moves after a confirmation was shown
    stale = {**form, "balance": "30.00", "old": "2000"}
    assert admin.post(f"/dashboard/customers/{buyer}/adjust", stale).status_code == 409
    assert _balance(kassa, buyer) == 2100 and _adjustments(kassa) == 1


@pytest.mark.parametrize(
    "form",
    [
        {"currency": "EUR", "balance": "3.005", "reason": "x"},
        {"currency": "EUR", "balance": "abc", "reason": "x"},
        {"currency": "EUR", "balance": "", "reason": "x"},
        {"currency": "EUR", "balance": "3.00", "reason": ""},
        {"currency": "EUR", "balance": "3.00", "reason": "x" * 501},
        {"currency": "XAU", "balance": "3.00", "reason": "x"},
        {"currency": "EUR", "balance": "99999999999999", "reason": "x"},
    ],
)
def test_what_is_not_a_balance_of_the_currency_with_a_reason_is_refused(
    kassa: Kassa, staff: Staff, buyer: str, form: dict[str, str]
) -> None:
    admin = staff("admin")
    confirm = admin.get(f"/dashboard/customers/{buyer}/adjust", params=form)
    posted = admin.post(f"/dashboard/customers/{buyer}/adjust", {**form, "old": "5000"})
    assert (confirm.status_code, posted.status_code) == (422, 422), (confirm.text, posted.text)
    assert 'role="alert"' in posted.text and 'id="balance"' in posted.text
    assert _balance(kassa, buyer) == 5000 and _adjustments(kassa) == 0


@pytest.mark.parametrize("role", ["analyst", "ops"])
def test_analysts_and_ops_see_no_adjust_control_and_are_refused_if_they_post(
    kassa: Kassa, staff: Staff, buyer: str, role: str
) -> None:
    user = staff(role)
    page = user.get(f"/dashboard/customers/{buyer}")
    assert page.status_code == 200
    assert "/adjust" not in page.text and 'id="balance"' not in page.text
    form = {"currency": "EUR", "balance": "1.00", "reason": "x", "old": "5000"}
    assert user.get(f"/dashboard/customers/{buyer}/adjust", params=form).status_code == 403
    assert user.post(f"/dashboard/customers/{buyer}/adjust", form).status_code == 403
    assert _balance(kassa, buyer) == 5000 and _adjustments(kassa) == 0


def test_an_adjustment_without_its_csrf_token_is_refused(
    kassa: Kassa, staff: Staff, buyer: str
) -> None:
    form = {"currency": "EUR", "balance": "1.00", "reason": "x", "old": "5000", "csrf_token": ""}
    assert staff("admin").post(f"/dashboard/customers/{buyer}/adjust", form).status_code == 403
    assert _balance(kassa, buyer) == 5000


# -- payments -----------------------------------------------------------------------------


def test_the_payments_page_shows_health_recovery_and_links_payments_by_order_number(
    client: TestClient, keys: Keys, staff: Staff
) -> None:
    make_product(client, keys)
    recovered = order(client, keys)
    assert pay(client, keys, recovered["id"], payment_method="pm_card_visa|api_error")[
        "recovered_by_retry"
    ]
    cus = customer(client, keys)
    _top_up(client, keys, cus)
    page = staff("analyst").get("/dashboard/payments")
    assert page.status_code == 200, page.text
    text = page.text
    assert "Gateway health" in text and "<td>mock</td>" in text
    assert "status-healthy" in text
    assert "Recovered by retry" in text and "100.0%" in text  # 1 of 1 retried
    assert "api error" in text  # the failed attempt's type
    assert f'href="/dashboard/orders/{recovered["number"]}"' in text
    assert f'href="/dashboard/customers/{cus}"' in text  # the top-up
    assert "recovered by retry" in text


def test_the_status_filter_and_the_window_select(
    client: TestClient, keys: Keys, staff: Staff
) -> None:
    make_product(client, keys)
    good = paid_order(client, keys)
    bad = order(client, keys)
    r = client.post(
        f"/v1/orders/{bad['id']}/payments",
        json={"payment_method": "pm_card_chargeDeclined"},
        headers=keys.headers("storefront"),
    )
    assert r.json()["status"] == "failed", r.text
    analyst = staff("analyst")
    failed = analyst.get("/dashboard/payments", params={"status": "failed", "window": "1h"})
    assert failed.status_code == 200
    assert f"/dashboard/orders/{bad['number']}" in failed.text
    assert f"/dashboard/orders/{good['number']}" not in failed.text
    assert '<option value="1h" selected>' in failed.text
    odd = analyst.get("/dashboard/payments", params={"status": "nope", "window": "99y"})
    assert odd.status_code == 200 and '<option value="24h" selected>' in odd.text


def test_the_payments_page_reads_the_same_number_of_statements_for_2_or_8_payments(
    kassa: Kassa, client: TestClient, keys: Keys, staff: Staff
) -> None:
    make_product(client, keys)
    analyst = staff("analyst")
    counts = []
    for more in (2, 6):
        for _ in range(more):
            paid_order(client, keys)
        analyst.get("/dashboard/payments")  # the gateways' first reports store their state
        with statements_sent(kassa) as seen:
            assert analyst.get("/dashboard/payments").status_code == 200
        counts.append(len(seen))
    assert counts[0] == counts[1], counts


def test_the_customer_page_reads_the_same_number_of_statements_for_1_or_6_orders(
    kassa: Kassa, client: TestClient, keys: Keys, staff: Staff, buyer: str
) -> None:
    admin = staff("admin")
    admin.get(f"/dashboard/customers/{buyer}")  # the session's first use is written
    counts = []
    for more in (0, 5):
        for _ in range(more):
            paid_order(client, keys, customer=buyer)
            _top_up(client, keys, buyer, 100)
        with statements_sent(kassa) as seen:
            assert admin.get(f"/dashboard/customers/{buyer}").status_code == 200
        counts.append(len(seen))
    assert counts[0] == counts[1], counts


# -- revenue ------------------------------------------------------------------------------


def test_the_revenue_page_shows_the_kpis_and_their_charts_with_a_table_of_the_numbers(
    client: TestClient, keys: Keys, staff: Staff
) -> None:
    make_product(client, keys, unit_amount=1250)
    paid_order(client, keys)
    paid_order(client, keys)
    page = staff("analyst").get("/dashboard/revenue")
    assert page.status_code == 200, page.text
    text = page.text
    assert '<option value="30d" selected>' in text
    assert "€25.00" in text  # net and gross sales, in major units
    assert "€12.50" in text  # the average order value
    assert text.count('role="img"') == 2  # net sales and orders paid
    assert '<title id="net-eur-title">Net sales per day in EUR' in text
    assert "<details>" in text and '<th scope="col">Day</th>' in text
    assert "<script" not in text


def test_a_period_and_a_currency_filter_the_report_and_what_the_api_refuses_is_refused(
    client: TestClient, keys: Keys, staff: Staff, kassa: Kassa
) -> None:
    make_product(client, keys)
    paid_order(client, keys)
    analyst = staff("analyst")
    today = kassa.clock().astimezone(kassa.kpis.zone).date().isoformat()
    dated = analyst.get("/dashboard/revenue", params={"from": today, "to": today})
    assert dated.status_code == 200 and "€10.00" in dated.text
    assert f"{today} to {today}" in dated.text
    other = analyst.get("/dashboard/revenue", params={"window": "7d", "currency": "usd"})
    assert other.status_code == 200 and "€10.00" not in other.text
    assert "<h2>USD</h2>" in other.text
    for params in (
        {"window": "forever"},
        {"from": today},
        {"from": today, "to": "2026-13-45"},
        {"from": today + "x" * 20, "to": today},
        {"currency": "ZZZ"},
        {"currency": "EURO"},
    ):
        refused = analyst.get("/dashboard/revenue", params=params)
        assert refused.status_code == 422, (params, refused.text)
        assert 'role="alert"' in refused.text


def test_every_money_page_opens_for_an_analyst(staff: Staff) -> None:
    analyst = staff("analyst")
    for path in ("/dashboard/customers", "/dashboard/payments", "/dashboard/revenue"):
        page = analyst.get(path)
        assert page.status_code == 200, (path, page.text)
        assert "default-src 'self'" in page.headers["content-security-policy"]
