"""Revenue KPIs (`GET /v1/kpis`) on both databases, from a shop's history made through
the API on a fake clock. Every expected figure is worked out by hand in the comments,
from the events listed beside it, never by the code under test."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import insert, select

from kassa.bootstrap import Kassa
from kassa.config import Settings
from kassa.storage.database import Database, table_of
from kassa.storage.migrate import alembic_config, upgrade
from kassa.storage.tables import AuditRecord, Order, Refund
from tests.builders import make_product
from tests.conftest import FakeClock, Keys

DECLINED = "pm_card_chargeDeclined"
CARD = "pm_card_visa"


@pytest.fixture
def zone() -> str:
    """The shop's KASSA_TIMEZONE; a test parametrizes it to change it."""
    return "UTC"


@pytest.fixture
def settings(database_url: str, zone: str) -> Settings:
    return Settings(database_url=database_url, reservation_ttl_s=1800, timezone=zone)


def at(clock: FakeClock, *parts: int) -> None:
    clock.now = datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


class Shop:
    """Staff doing things through the API, each at the fake clock's time."""

    def __init__(self, client: TestClient, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = self.client.post(path, json=body, headers=self.keys.headers("ops"))
        assert r.status_code in (200, 201), r.text
        return dict(r.json())

    def customer(self, email: str) -> str:
        return str(self.post("/v1/customers", {"email": email})["id"])

    def order(self, sku: str, qty: int, currency: str = "EUR", **buyer: str) -> str:
        body = {
            **(buyer or {"email": "guest@example.com"}),
            "currency": currency,
            "lines": [{"sku": sku, "quantity": qty}],
        }
        return str(self.post("/v1/orders", body)["id"])

    def pay(self, order_id: str, method: str = CARD, **body: str) -> dict[str, Any]:
        return self.post(f"/v1/orders/{order_id}/payments", {"payment_method": method, **body})

    def paid(self, sku: str, qty: int, currency: str = "EUR", **buyer: str) -> str:
        order_id = self.order(sku, qty, currency, **buyer)
        assert self.pay(order_id)["status"] == "succeeded"
        return order_id

    def refund(self, order_id: str, amount: int, destination: str = "original") -> None:
        body = {"amount": amount, "destination": destination}
        refund = self.post(f"/v1/orders/{order_id}/refunds", body)
        assert refund["status"] == "succeeded", refund

    def cancel(self, order_id: str) -> None:
        assert self.post(f"/v1/orders/{order_id}/cancel", {})["status"] == "canceled"

    def top_up(self, customer_id: str, amount: int) -> None:
        body = {"amount": amount, "currency": "EUR", "payment_method": CARD}
        assert self.post(f"/v1/customers/{customer_id}/wallet/top-ups", body)["status"] == (
            "succeeded"
        )

    def kpis(self, query: str, role: str = "analyst") -> dict[str, Any]:
        r = self.client.get(f"/v1/kpis?{query}", headers=self.keys.headers(role))
        assert r.status_code == 200, r.text
        return dict(r.json())


@pytest.fixture
def shop(client: TestClient, keys: Keys) -> Shop:
    make_product(client, keys, "MUG", unit_amount=1000, currency="EUR")
    make_product(client, keys, "CAP", unit_amount=1500, currency="USD")
    return Shop(client, keys)


def day(date: str, currency: str, paid: int, gross: int, refunds: int) -> dict[str, Any]:
    return {
        "date": date,
        "currency": currency,
        "orders_paid": paid,
        "gross_sales": gross,
        "refunds": refunds,
        "net_sales": gross - refunds,
    }


def a_week_of_trade(shop: Shop, clock: FakeClock) -> None:
    """The history every UTC test reads; the window asked about is 2026-11-25..12-01.

    Before the window (20-24 Nov): customer A, A's order O0 (2 MUG, 2000 EUR) paid, A's
    wallet topped up with 1000 EUR, a guest order O5 left pending.
    In the window:
      25 Nov  customer B; B's O1 (1 MUG, 1000) paid; O2 (3 MUG, 3000): declined, then paid
      26 Nov  O3 (1 CAP, 1500 USD) paid; O5 canceled; B's wallet topped up with 5000 EUR
      27 Nov  500 refunded of O0 (paid on the 20th); O4 (1 MUG) created
      28 Nov  O4 canceled; O6 (1 MUG, 1000) paid after a retry (the provider's api_error)
      29 Nov  300 of O1 refunded into B's wallet
      30 Nov  A's O9 (1 MUG, 1000) paid from A's wallet (1000 -> 0)
       1 Dec  O7 (2 MUG, 2000) paid at 23:30 UTC, the window's last half hour
    After it (2 Dec): O8 (1 MUG) paid at 00:30, O3 refunded in full (1500 USD), B's wallet
    topped up with 2000 EUR more, customer C.
    """
    at(clock, 2026, 11, 20, 10, 0)
    a = shop.customer("a@example.com")
    o0 = shop.paid("MUG", 2, customer=a)
    at(clock, 2026, 11, 21, 10, 0)
    shop.top_up(a, 1000)
    at(clock, 2026, 11, 24, 10, 0)
    o5 = shop.order("MUG", 1)

    at(clock, 2026, 11, 25, 9, 0)
    b = shop.customer("b@example.com")
    o1 = shop.paid("MUG", 1, customer=b)
    at(clock, 2026, 11, 25, 12, 0)
    o2 = shop.order("MUG", 3)
    assert shop.pay(o2, DECLINED)["status"] == "failed"
    at(clock, 2026, 11, 25, 12, 5)
    assert shop.pay(o2)["status"] == "succeeded"
    at(clock, 2026, 11, 26, 10, 0)
    o3 = shop.paid("CAP", 1, "USD")
    at(clock, 2026, 11, 26, 11, 0)
    shop.cancel(o5)
    at(clock, 2026, 11, 26, 12, 0)
    shop.top_up(b, 5000)
    at(clock, 2026, 11, 27, 10, 0)
    shop.refund(o0, 500)
    at(clock, 2026, 11, 27, 11, 0)
    o4 = shop.order("MUG", 1)
    at(clock, 2026, 11, 28, 9, 0)
    shop.cancel(o4)
    at(clock, 2026, 11, 28, 10, 0)
    o6 = shop.order("MUG", 1)
    retried = shop.pay(o6, f"{CARD}|api_error")
    assert (retried["status"], retried["recovered_by_retry"]) == ("succeeded", True)
    at(clock, 2026, 11, 29, 10, 0)
    shop.refund(o1, 300, destination="wallet")
    at(clock, 2026, 11, 30, 10, 0)
    o9 = shop.order("MUG", 1, customer=a)
    assert shop.post(f"/v1/orders/{o9}/payments", {"provider": "wallet"})["status"] == ("succeeded")
    at(clock, 2026, 12, 1, 23, 30)
    shop.paid("MUG", 2)

    at(clock, 2026, 12, 2, 0, 30)
    shop.paid("MUG", 1)
    at(clock, 2026, 12, 2, 1, 0)
    shop.refund(o3, 1500)
    at(clock, 2026, 12, 2, 2, 0)
    shop.top_up(b, 2000)
    shop.customer("c@example.com")
    at(clock, 2026, 12, 2, 3, 0)


def test_every_figure_of_a_week(shop: Shop, clock: FakeClock) -> None:
    a_week_of_trade(shop, clock)
    report = shop.kpis("from=2026-11-25&to=2026-12-01")
    assert report == {
        "object": "kpi_report",
        "from": "2026-11-25",
        "to": "2026-12-01",
        "timezone": "UTC",
        "currencies": [
            {
                # paid in the window: O1 1000, O2 3000, O6 1000, O9 1000, O7 2000
                "currency": "EUR",
                "orders_paid": 5,
                "gross_sales": 8000,
                # succeeded in the window: 500 of O0 (paid before it), 300 of O1
                "refunds": 800,
                "net_sales": 7200,
                "average_order_value": 1600,  # 8000 / 5
                "refund_rate_bp": 1000,  # 800 * 10000 / 8000
                # at 2 Dec 00:00 UTC: A 1000 - 1000 = 0; B 5000 + 300 (not the 2000 after)
                "wallet_liability": 5300,
            },
            {
                # O3 only; its refund came after the window; never added to the euros
                "currency": "USD",
                "orders_paid": 1,
                "gross_sales": 1500,
                "refunds": 0,
                "net_sales": 1500,
                "average_order_value": 1500,
                "refund_rate_bp": 0,
                "wallet_liability": 0,
            },
        ],
        "orders_created": 7,  # O1, O2, O3, O4, O6, O9, O7 (not O0, O5 before nor O8 after)
        "orders_canceled": 2,  # O5 (created before the window) and O4
        "new_customers": 1,  # B (A before, C after)
        "payments": {
            # created in the window and ended: O1 ok, O2 declined, O2 ok, O3 ok, B's
            # top-up ok, O6 ok (after a retry), O9 from the wallet ok, O7 ok
            "finished": 8,
            "succeeded": 7,
            "success_rate_bp": 8750,  # 7 * 10000 / 8
            "recovered_by_retry": 1,  # O6
        },
        "series": [
            day("2026-11-25", "EUR", 2, 4000, 0),  # O1, O2
            day("2026-11-26", "USD", 1, 1500, 0),  # O3
            day("2026-11-27", "EUR", 0, 0, 500),  # a refund alone: net -500
            day("2026-11-28", "EUR", 1, 1000, 0),  # O6
            day("2026-11-29", "EUR", 0, 0, 300),
            day("2026-11-30", "EUR", 1, 1000, 0),  # O9
            day("2026-12-01", "EUR", 1, 2000, 0),  # O7 at 23:30
        ],
    }


def test_one_currency_and_the_named_windows(shop: Shop, clock: FakeClock) -> None:
    a_week_of_trade(shop, clock)  # the clock is left at 2 Dec 03:00 UTC
    usd = shop.kpis("from=2026-11-25&to=2026-12-01&currency=usd")
    assert usd["currencies"] == [
        {
            "currency": "USD",
            "orders_paid": 1,
            "gross_sales": 1500,
            "refunds": 0,
            "net_sales": 1500,
            "average_order_value": 1500,
            "refund_rate_bp": 0,
            "wallet_liability": 0,
        }
    ]
    assert (usd["orders_created"], usd["orders_canceled"]) == (1, 0)  # O3; both cancels EUR
    assert usd["new_customers"] == 1  # customers have no currency: B still counts
    assert usd["payments"] == {
        "finished": 1,
        "succeeded": 1,
        "success_rate_bp": 10000,
        "recovered_by_retry": 0,
    }
    assert usd["series"] == [day("2026-11-26", "USD", 1, 1500, 0)]

    today = shop.kpis("window=today")
    assert (today["from"], today["to"]) == ("2026-12-02", "2026-12-02")
    assert today["currencies"] == [
        {
            # O8 at 00:30; liability at the end of 2 Dec: 5300 + B's 2000
            "currency": "EUR",
            "orders_paid": 1,
            "gross_sales": 1000,
            "refunds": 0,
            "net_sales": 1000,
            "average_order_value": 1000,
            "refund_rate_bp": 0,
            "wallet_liability": 7300,
        },
        {
            # O3's refund (paid on 26 Nov): a day of refunds and no sales
            "currency": "USD",
            "orders_paid": 0,
            "gross_sales": 0,
            "refunds": 1500,
            "net_sales": -1500,
            "average_order_value": 0,
            "refund_rate_bp": None,
            "wallet_liability": 0,
        },
    ]
    assert (today["orders_created"], today["orders_canceled"], today["new_customers"]) == (1, 0, 1)
    assert today["payments"] == {  # O8 and B's second top-up
        "finished": 2,
        "succeeded": 2,
        "success_rate_bp": 10000,
        "recovered_by_retry": 0,
    }
    assert today["series"] == [
        day("2026-12-02", "EUR", 1, 1000, 0),
        day("2026-12-02", "USD", 0, 0, 1500),
    ]

    yesterday = shop.kpis("window=yesterday&currency=EUR")
    assert (yesterday["from"], yesterday["to"]) == ("2026-12-01", "2026-12-01")
    eur = yesterday["currencies"][0]
    assert (eur["orders_paid"], eur["gross_sales"], eur["wallet_liability"]) == (1, 2000, 5300)

    week = shop.kpis("window=7d")  # 26 Nov .. 2 Dec, today included
    assert (week["from"], week["to"]) == ("2026-11-26", "2026-12-02")
    # 25 Nov drops out (O1, O2: 4000), 2 Dec comes in (O8: 1000)
    assert [
        (c["currency"], c["orders_paid"], c["gross_sales"], c["refunds"])
        for c in week["currencies"]
    ] == [("EUR", 4, 5000, 800), ("USD", 1, 1500, 1500)]

    month = shop.kpis("window=mtd")
    assert (month["from"], month["to"]) == ("2026-12-01", "2026-12-02")
    thirty = shop.kpis("window=30d")
    assert (thirty["from"], thirty["to"]) == ("2026-11-03", "2026-12-02")
    year = shop.kpis("window=ytd")
    assert (year["from"], year["to"]) == ("2026-01-01", "2026-12-02")
    # every euro order paid: O0 2000 + O1 1000 + O2 3000 + O6 1000 + O9 1000 + O7 2000
    # + O8 1000 = 11000 in 7 orders
    eur_year = year["currencies"][0]
    assert (eur_year["orders_paid"], eur_year["gross_sales"], eur_year["refunds"]) == (
        7,
        11000,
        800,
    )
    assert (year["orders_created"], year["orders_canceled"], year["new_customers"]) == (10, 2, 3)


def test_an_empty_window(shop: Shop, clock: FakeClock) -> None:
    at(clock, 2026, 6, 1, 12, 0)
    assert shop.kpis("from=2026-01-01&to=2026-01-31") == {
        "object": "kpi_report",
        "from": "2026-01-01",
        "to": "2026-01-31",
        "timezone": "UTC",
        "currencies": [],
        "orders_created": 0,
        "orders_canceled": 0,
        "new_customers": 0,
        "payments": {
            "finished": 0,
            "succeeded": 0,
            "success_rate_bp": None,
            "recovered_by_retry": 0,
        },
        "series": [],
    }
    # a currency asked for is listed even with nothing in it
    eur = shop.kpis("from=2026-01-01&to=2026-01-31&currency=EUR")["currencies"]
    assert eur == [
        {
            "currency": "EUR",
            "orders_paid": 0,
            "gross_sales": 0,
            "refunds": 0,
            "net_sales": 0,
            "average_order_value": 0,
            "refund_rate_bp": None,
            "wallet_liability": 0,
        }
    ]


def test_a_wallet_owes_at_the_end_of_a_window_without_sales(shop: Shop, clock: FakeClock) -> None:
    at(clock, 2026, 4, 10, 8, 0)
    cus = shop.customer("w@example.com")
    shop.top_up(cus, 4000)
    at(clock, 2026, 5, 10, 8, 0)
    shop.top_up(cus, 600)
    # April alone: no sale, but the wallets owe 4000 at its end (the May top-up is later)
    april = shop.kpis("from=2026-04-20&to=2026-04-30")
    assert april["currencies"] == [
        {
            "currency": "EUR",
            "orders_paid": 0,
            "gross_sales": 0,
            "refunds": 0,
            "net_sales": 0,
            "average_order_value": 0,
            "refund_rate_bp": None,
            "wallet_liability": 4000,
        }
    ]
    assert april["series"] == [] and april["payments"]["finished"] == 0
    assert shop.kpis("from=2026-05-10&to=2026-05-10")["currencies"][0]["wallet_liability"] == 4600
    assert shop.kpis("from=2026-04-09&to=2026-04-09")["currencies"] == []  # nothing owed yet


# -- the shop's time zone: days of 23 and 25 hours ----------------------------------------


@pytest.mark.parametrize("zone", ["Europe/Berlin"])
def test_days_are_the_shops_across_the_autumn_dst_change(
    shop: Shop, clock: FakeClock, zone: str
) -> None:
    # Berlin, 25 Oct 2026 lasts 25 hours: 24 Oct 22:00 UTC to 25 Oct 23:00 UTC.
    at(clock, 2026, 10, 24, 21, 30)  # 23:30 CEST on the 24th
    first = shop.paid("MUG", 1)
    at(clock, 2026, 10, 24, 22, 30)  # 00:30 CEST on the 25th: the next local day
    shop.customer("early@example.com")
    shop.paid("MUG", 2)
    at(clock, 2026, 10, 25, 22, 30)  # 23:30 CET, still the 25th (UTC+2 would say 26th)
    shop.paid("MUG", 3)
    at(clock, 2026, 10, 25, 22, 59)  # 23:59 CET on the 25th
    shop.refund(first, 700)
    cus = shop.customer("w@example.com")
    shop.top_up(cus, 900)
    at(clock, 2026, 10, 25, 23, 30)  # 00:30 CET on the 26th
    shop.paid("MUG", 4)
    shop.top_up(cus, 100)

    report = shop.kpis("from=2026-10-24&to=2026-10-26")
    assert report["timezone"] == "Europe/Berlin"
    assert report["series"] == [
        day("2026-10-24", "EUR", 1, 1000, 0),
        day("2026-10-25", "EUR", 2, 5000, 700),  # one day of 25 hours
        day("2026-10-26", "EUR", 1, 4000, 0),
    ]
    the_long_day = shop.kpis("from=2026-10-25&to=2026-10-25")
    eur = the_long_day["currencies"][0]
    assert (eur["orders_paid"], eur["gross_sales"], eur["refunds"], eur["net_sales"]) == (
        2,
        5000,
        700,
        4300,
    )
    assert eur["average_order_value"] == 2500 and eur["refund_rate_bp"] == 1400
    assert eur["wallet_liability"] == 900  # the 100 came at 00:30 on the 26th
    assert (the_long_day["orders_created"], the_long_day["new_customers"]) == (2, 2)
    assert the_long_day["payments"]["finished"] == 3  # two orders and the top-up
    # "today" is Berlin's: at 23:30 UTC on the 25th it is already the 26th there
    today = shop.kpis("window=today")
    assert (today["from"], today["to"]) == ("2026-10-26", "2026-10-26")
    assert today["series"] == [day("2026-10-26", "EUR", 1, 4000, 0)]
    # kpis.csv buckets by the same days: the exports take KASSA_TIMEZONE too
    csv = shop.client.get(
        "/v1/exports/kpis.csv",
        params={"from": "2026-10-24", "to": "2026-10-26"},
        headers=shop.keys.headers("analyst"),
    )
    assert csv.status_code == 200, csv.text
    assert csv.text.splitlines()[1:] == [
        ",".join(str(row[c]) for c in row) for row in report["series"]
    ]


@pytest.mark.parametrize("zone", ["Europe/Berlin"])
def test_days_are_the_shops_across_the_spring_dst_change(
    shop: Shop, clock: FakeClock, zone: str
) -> None:
    # Berlin, 29 Mar 2026 lasts 23 hours: 28 Mar 23:00 UTC to 29 Mar 22:00 UTC.
    at(clock, 2026, 3, 28, 22, 30)  # 23:30 CET on the 28th
    shop.paid("MUG", 1)
    at(clock, 2026, 3, 28, 23, 30)  # 00:30 CET on the 29th: the next local day
    shop.paid("MUG", 2)
    at(clock, 2026, 3, 29, 21, 30)  # 23:30 CEST on the 29th
    shop.paid("MUG", 3)
    at(clock, 2026, 3, 29, 22, 30)  # 00:30 CEST on the 30th (UTC+1 would say 23:30 the 29th)
    shop.paid("MUG", 4)
    report = shop.kpis("from=2026-03-28&to=2026-03-30")
    assert report["series"] == [
        day("2026-03-28", "EUR", 1, 1000, 0),
        day("2026-03-29", "EUR", 2, 5000, 0),  # one day of 23 hours
        day("2026-03-30", "EUR", 1, 4000, 0),
    ]
    assert report["currencies"][0]["gross_sales"] == 10000
    assert report["orders_created"] == 4


# -- who may ask, and what is refused ----------------------------------------------------


def test_roles(shop: Shop, client: TestClient, keys: Keys) -> None:
    for role in ("analyst", "ops", "admin"):
        r = client.get("/v1/kpis?window=7d", headers=keys.headers(role))
        assert r.status_code == 200 and r.json()["object"] == "kpi_report"
    r = client.get("/v1/kpis?window=7d", headers=keys.headers("storefront"))
    assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
    assert client.get("/v1/kpis?window=7d").status_code == 401


@pytest.mark.parametrize(
    ("query", "code", "field"),
    [
        ("from=2026-12-01&to=2026-11-30", "invalid_period", "from"),  # from > to
        ("from=2025-01-01&to=2026-01-02", "invalid_period", "to"),  # 367 days
        ("from=1970-01-01&to=9998-12-31", "invalid_period", "to"),
        ("", "invalid_period", "from"),  # neither
        ("window=7d&from=2026-01-01&to=2026-01-02", "invalid_period", "window"),  # both
        ("from=2026-01-01", "invalid_period", "to"),
        ("window=forever", "invalid_period", "window"),
        ("from=2026-02-29&to=2026-03-01", "invalid_period", "from"),  # not a leap year
        ("from=2026-01-01&to=9999-12-31", "invalid_period", "to"),
        ("from=0001-01-01&to=0001-01-01", "invalid_period", "from"),
        ("from=%27%20OR%201=1--&to=2026-01-02", "invalid_period", "from"),
        ("from=2026-01-01%27%20OR%201=1&to=2026-01-02", "validation_error", "from"),  # too long
        ("window=today&currency=XYZ", "unknown_currency", "currency"),
        ("window=today&currency=euro", "validation_error", "currency"),
    ],
)
def test_bad_queries_are_422(
    shop: Shop, client: TestClient, keys: Keys, query: str, code: str, field: str
) -> None:
    r = client.get(f"/v1/kpis?{query}", headers=keys.headers("analyst"))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["code"] == code
    assert field in [e["field"] for e in body["errors"]]


def test_the_longest_window_is_366_days(shop: Shop, client: TestClient, keys: Keys) -> None:
    r = client.get("/v1/kpis?from=2025-01-01&to=2026-01-01", headers=keys.headers("analyst"))
    assert r.status_code == 200 and r.json()["series"] == []


def test_the_series_alone_for_the_export(shop: Shop, clock: FakeClock, kassa: Kassa) -> None:
    """`daily_rows`, what `kpis.csv` holds, read in a snapshot the caller (the export) holds,
    in the export contract's column order."""
    a_week_of_trade(shop, clock)
    query = kassa.kpis.query(first="2026-11-25", last="2026-11-27")
    with kassa.db.snapshot() as session:
        rows = list(kassa.kpis.daily_rows(session, query.period))
    assert rows == [
        ("2026-11-25", "EUR", 2, 4000, 0, 4000),
        ("2026-11-26", "USD", 1, 1500, 0, 1500),
        ("2026-11-27", "EUR", 0, 0, 500, -500),
    ]


# -- migration 0012: when did the refunds of before succeed? ----------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def at_0011(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database of its own at the revision before `refunds.succeeded_at`."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
        upgrade(url, "0011")
        return url
    url = str(request.getfixturevalue("own_pg_database"))  # migrated to head: go back
    command.downgrade(alembic_config(url), "0011")
    return url


def test_the_migration_dates_the_refunds_that_succeeded_before_it(at_0011: str) -> None:
    db = Database(at_0011)
    created, audited, updated = (
        datetime(2026, 3, 1, 9, tzinfo=UTC),
        datetime(2026, 3, 2, 10, tzinfo=UTC),
        datetime(2026, 3, 5, 11, tzinfo=UTC),
    )
    refund = {"order_id": "ord_1", "amount": 100, "currency": "EUR", "destination": "original"}
    with db.transaction() as s:
        s.execute(
            insert(table_of(Order)).values(
                id="ord_1", status="paid", currency="EUR", subtotal=1000, total=1000,
                amount_paid=1000, amount_refunded=300, stock_shortage=False, disputed=False,
                email="m@example.com", metadata={}, created_at=created,
            )
        )  # fmt: skip
        for id_, status, updated_at in [
            ("re_audited", "succeeded", updated),  # audit says the 2nd; updated the 5th
            ("re_unaudited", "succeeded", updated),
            ("re_untouched", "succeeded", None),
            ("re_pending", "pending", updated),
        ]:
            s.execute(
                insert(table_of(Refund)).values(
                    id=id_, status=status, origin="kassa", created_at=created,
                    updated_at=updated_at, **refund,
                )
            )  # fmt: skip
        s.execute(
            insert(table_of(AuditRecord)).values(
                id="aud_1", actor_key_id="system", action="refund.succeeded",
                subject_id="re_audited", created_at=audited,
            )
        )  # fmt: skip
    upgrade(at_0011)
    with db.transaction(read_only=True) as s:
        got = {id_: at for id_, at in s.execute(select(Refund.id, Refund.succeeded_at))}
    db.dispose()
    assert got == {
        "re_audited": audited,  # the audit record of its success
        "re_unaudited": updated,  # none: its last update
        "re_untouched": created,  # not even that: its creation
        "re_pending": None,
    }
