"""Concurrent refunds and wallet spends against a two-process server, both databases."""

from __future__ import annotations

import threading
from collections import Counter

import httpx
from sqlalchemy import func, select

from kassa.bootstrap import Kassa
from kassa.providers.mock.tables import MockRefund
from kassa.services.catalogue import NewProduct
from kassa.services.context import RequestContext
from kassa.storage.tables import Order, Refund, WalletBalance, WalletEntry
from tests.conftest import Keys, LiveServer
from tests.reliability.test_races import _fire


def test_20_concurrent_partial_refunds_never_exceed_what_was_paid(
    live_server: LiveServer, kassa: Kassa, keys: Keys, system: RequestContext
) -> None:
    kassa.catalogue.create(system, NewProduct("MUG", "Mug", 1000, "EUR", stock=None))
    with httpx.Client(base_url=live_server.url, headers=keys.headers("ops")) as http:
        order = http.post(
            "/v1/orders",
            json={
                "email": "r@example.com",
                "currency": "EUR",
                "lines": [{"sku": "MUG", "quantity": 5}],
            },
        ).json()
        paid = http.post(
            f"/v1/orders/{order['id']}/payments", json={"payment_method": "pm_card_visa"}
        ).json()
        assert paid["status"] == "succeeded"
    # 20 x 700 = 14,000 asked against 5,000 paid
    responses = _fire(
        20,
        lambda h: h.post(
            f"{live_server.url}/v1/orders/{order['id']}/refunds",
            json={"amount": 700},
            headers=keys.headers("ops"),
        ),
    )
    statuses = Counter(r.status_code for r in responses)
    assert statuses == Counter({201: 7, 422: 13}), statuses
    assert {r.json()["code"] for r in responses if r.status_code == 422} == {
        "amount_exceeds_refundable"
    }
    with kassa.db.transaction(read_only=True) as s:
        refunded = s.scalar(select(Order.amount_refunded).where(Order.id == order["id"]))
        ours = sorted(s.scalars(select(Refund.amount).where(Refund.status == "succeeded")))
        at_provider = sorted(s.scalars(select(MockRefund.amount)))
    assert refunded == 4900 <= 5000
    assert ours == at_provider == [700] * 7  # the provider holds exactly the accepted refunds


def test_50_concurrent_spends_from_a_balance_that_covers_10(
    live_server: LiveServer, kassa: Kassa, keys: Keys, system: RequestContext
) -> None:
    kassa.catalogue.create(system, NewProduct("MUG", "Mug", 1000, "EUR", stock=None))
    with httpx.Client(base_url=live_server.url, headers=keys.headers("admin")) as http:
        cus = http.post("/v1/customers", json={"email": "w@example.com"}).json()["id"]
        assert (
            http.post(
                f"/v1/customers/{cus}/wallet/adjust",
                json={"currency": "EUR", "balance": 10_000, "reason": "test"},
            ).status_code
            == 200
        )
        orders = [
            http.post(
                "/v1/orders",
                json={"customer": cus, "currency": "EUR", "lines": [{"sku": "MUG", "quantity": 1}]},
            ).json()["id"]
            for _ in range(50)
        ]
    queue = iter(orders)
    lock = threading.Lock()

    def spend(h: httpx.Client) -> httpx.Response:
        with lock:
            order_id = next(queue)
        return h.post(
            f"{live_server.url}/v1/orders/{order_id}/payments",
            json={"provider": "wallet"},
            headers=keys.headers("ops"),
        )

    responses = _fire(50, spend)
    statuses = Counter(r.status_code for r in responses)
    assert statuses == Counter({201: 10, 422: 40}), statuses
    assert {r.json()["code"] for r in responses if r.status_code == 422} == {
        "insufficient_wallet_balance"
    }
    with kassa.db.transaction(read_only=True) as s:
        balance = s.scalar(select(WalletBalance.balance))
        ledger = s.scalar(select(func.sum(WalletEntry.amount)))
        paid = s.scalar(select(func.count()).where(Order.status == "paid"))
    assert balance == ledger == 0
    assert paid == 10
