"""Refunds and wallets through the API, on both databases."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from kassa.bootstrap import Kassa
from kassa.providers.mock.tables import MockRefund
from kassa.services.catalogue import NewProduct
from kassa.services.context import RequestContext
from kassa.services.refunds import RESUME_AFTER_S
from kassa.storage.tables import AuditRecord, WalletBalance, WalletEntry
from kassa.worker import Worker
from tests.conftest import FakeClock, Keys


@pytest.fixture
def shop(kassa: Kassa, system: RequestContext) -> Kassa:
    kassa.catalogue.create(system, NewProduct("MUG", "Mug", 1000, "EUR", stock=None))
    return kassa


def customer(client: TestClient, keys: Keys) -> str:
    return str(
        client.post(
            "/v1/customers", json={"email": "c@example.com"}, headers=keys.headers("ops")
        ).json()["id"]
    )


def paid_order(
    client: TestClient,
    keys: Keys,
    qty: int = 3,
    cus: str | None = None,
    method: str = "pm_card_visa",
) -> dict[str, Any]:
    buyer: dict[str, str] = {"customer": cus} if cus else {"email": "r@example.com"}
    order = client.post(
        "/v1/orders",
        json={**buyer, "currency": "EUR", "lines": [{"sku": "MUG", "quantity": qty}]},
        headers=keys.headers("ops"),
    ).json()
    p = client.post(
        f"/v1/orders/{order['id']}/payments",
        json={"payment_method": method},
        headers=keys.headers("ops"),
    ).json()
    assert p["status"] == "succeeded", p
    return dict(order)


def refund(client: TestClient, keys: Keys, order_id: str, role: str = "ops", **body: Any) -> Any:
    return client.post(f"/v1/orders/{order_id}/refunds", json=body, headers=keys.headers(role))


def order(client: TestClient, keys: Keys, order_id: str) -> dict[str, Any]:
    return dict(client.get(f"/v1/orders/{order_id}", headers=keys.headers("ops")).json())


def provider_refunds(kassa: Kassa, order_id: str) -> list[int]:
    with kassa.db.transaction(read_only=True) as s:
        return sorted(s.scalars(select(MockRefund.amount).where(MockRefund.order_ref == order_id)))


def test_refund_rules(shop: Kassa, client: TestClient, keys: Keys) -> None:
    assert refund(client, keys, "ord_missing").status_code == 404
    assert refund(client, keys, "ord_missing").json()["code"] == "order_not_found"
    pending = client.post(
        "/v1/orders",
        json={
            "email": "p@example.com",
            "currency": "EUR",
            "lines": [{"sku": "MUG", "quantity": 1}],
        },
        headers=keys.headers("ops"),
    ).json()
    r = refund(client, keys, pending["id"])
    assert (r.status_code, r.json()["code"]) == (409, "order_not_paid")
    o = paid_order(client, keys)
    for bad in (0, -5, 3001):
        r = refund(client, keys, o["id"], amount=bad)
        assert (r.status_code, r.json()["code"]) == (422, "amount_exceeds_refundable"), bad
        assert r.json()["errors"][0]["field"] == "amount"
    assert refund(client, keys, o["id"], role="analyst").status_code == 403
    assert refund(client, keys, o["id"], role="storefront").status_code == 403
    first = refund(client, keys, o["id"], amount=1200, reason="one mug broke")
    assert first.status_code == 201
    body = first.json()
    assert body["id"].startswith("re_") and body["status"] == "succeeded"
    assert (body["amount"], body["currency"], body["destination"]) == (1200, "EUR", "original")
    assert body["provider_refund_id"].startswith("re_mock_") and body["reason"] == "one mug broke"
    assert client.get(f"/v1/refunds/{body['id']}", headers=keys.headers("analyst")).json() == body
    got = order(client, keys, o["id"])
    assert (got["amount_refunded"], got["refund_status"]) == (1200, "partial")
    assert got["refunded_at"] is not None and got["status"] == "paid"
    rest = refund(client, keys, o["id"]).json()  # default: all that is left
    assert rest["amount"] == 1800
    got = order(client, keys, o["id"])
    assert (got["amount_refunded"], got["refund_status"]) == (3000, "full")
    again = refund(client, keys, o["id"])
    assert (again.status_code, again.json()["code"]) == (409, "order_already_refunded")
    assert provider_refunds(shop, o["id"]) == [1200, 1800]
    assert client.get("/v1/refunds/re_missing", headers=keys.headers("ops")).status_code == 404


def test_refunds_are_idempotent(shop: Kassa, client: TestClient, keys: Keys) -> None:
    o = paid_order(client, keys)
    headers = keys.headers("ops", **{"Idempotency-Key": "refund-once"})
    a = client.post(f"/v1/orders/{o['id']}/refunds", json={"amount": 700}, headers=headers)
    b = client.post(f"/v1/orders/{o['id']}/refunds", json={"amount": 700}, headers=headers)
    assert b.content == a.content and b.headers["idempotent-replayed"] == "true"
    assert provider_refunds(shop, o["id"]) == [700]


def test_a_refund_retried_after_a_lost_answer_is_one_provider_refund(
    shop: Kassa, client: TestClient, keys: Keys
) -> None:
    o = paid_order(client, keys, method="pm_card_visa|ok,ok,timeout_after_send")
    r = refund(client, keys, o["id"], amount=900).json()
    assert r["status"] == "succeeded"
    assert provider_refunds(shop, o["id"]) == [900]
    assert order(client, keys, o["id"])["amount_refunded"] == 900


def test_a_refund_the_provider_keeps_failing_stays_pending_until_the_worker_settles_it(
    shop: Kassa, client: TestClient, keys: Keys, clock: FakeClock
) -> None:
    # two 500s from the provider: it may or may not have refunded, so kassa must not guess
    o = paid_order(client, keys, method="pm_card_visa|ok,ok,api_error,api_error")
    r = refund(client, keys, o["id"], amount=900).json()
    assert r["status"] == "pending" and r["failure"]["category"] == "soft", r
    assert order(client, keys, o["id"])["amount_refunded"] == 0
    assert refund(client, keys, o["id"]).json()["amount"] == 2100  # the 900 is held back
    assert provider_refunds(shop, o["id"]) == [2100]

    Worker(shop, name="w").drain()  # too early: the resume job waits for the request to end
    assert client.get(f"/v1/refunds/{r['id']}", headers=keys.headers("ops")).json()["status"] == (
        "pending"
    )
    clock.advance(RESUME_AFTER_S + 1)
    Worker(shop, name="w").drain()
    settled = client.get(f"/v1/refunds/{r['id']}", headers=keys.headers("ops")).json()
    assert settled["status"] == "succeeded" and settled["provider_refund_id"]
    assert provider_refunds(shop, o["id"]) == [900, 2100]
    assert order(client, keys, o["id"])["amount_refunded"] == 3000
    assert shop.reconciliation.run() == []
    with shop.db.transaction(read_only=True) as s:
        trail = s.execute(
            select(AuditRecord.action, AuditRecord.actor_key_id)
            .where(AuditRecord.subject_id == r["id"])
            .order_by(AuditRecord.pk)
        ).all()
    assert [tuple(row) for row in trail] == [
        ("refund.created", keys.ids["ops"]),
        ("refund.outcome_unknown", keys.ids["ops"]),
        ("refund.succeeded", "worker"),
    ]


def test_refund_to_wallet(shop: Kassa, client: TestClient, keys: Keys) -> None:
    cus = customer(client, keys)
    o = paid_order(client, keys, cus=cus)
    r = refund(client, keys, o["id"], amount=1000, destination="wallet").json()
    assert (r["status"], r["destination"], r["provider_refund_id"]) == ("succeeded", "wallet", None)
    wallet = client.get(f"/v1/customers/{cus}/wallet", headers=keys.headers("analyst")).json()
    assert wallet["balances"] == {"EUR": 1000} and wallet["lifetime_paid"] == {"EUR": 0}
    assert [e["kind"] for e in wallet["entries"]] == ["refund"]
    assert provider_refunds(shop, o["id"]) == []
    guest = paid_order(client, keys)
    g = refund(client, keys, guest["id"], destination="wallet")
    assert (g.status_code, g.json()["code"]) == (422, "wallet_needs_customer")


def test_top_up_then_pay_from_the_wallet(shop: Kassa, client: TestClient, keys: Keys) -> None:
    cus = str(  # the storefront's own customer: another key's would be 404
        client.post(
            "/v1/customers", json={"email": "w@example.com"}, headers=keys.headers("storefront")
        ).json()["id"]
    )
    t = client.post(
        f"/v1/customers/{cus}/wallet/top-ups",
        json={"amount": 2500, "currency": "eur", "payment_method": "pm_card_visa"},
        headers=keys.headers("storefront"),
    )
    assert t.status_code == 201 and t.json()["status"] == "succeeded"
    assert t.json()["order"] is None and t.json()["top_up_customer"] == cus
    wallet = client.get(f"/v1/customers/{cus}/wallet", headers=keys.headers("ops")).json()
    assert wallet["balances"] == {"EUR": 2500} and wallet["lifetime_paid"] == {"EUR": 2500}
    o = client.post(
        "/v1/orders",
        json={"customer": cus, "currency": "EUR", "lines": [{"sku": "MUG", "quantity": 2}]},
        headers=keys.headers("ops"),
    ).json()
    p = client.post(
        f"/v1/orders/{o['id']}/payments", json={"provider": "wallet"}, headers=keys.headers("ops")
    )
    assert p.status_code == 201 and p.json()["status"] == "succeeded"
    assert order(client, keys, o["id"])["status"] == "paid"
    o2 = client.post(
        "/v1/orders",
        json={"customer": cus, "currency": "EUR", "lines": [{"sku": "MUG", "quantity": 1}]},
        headers=keys.headers("ops"),
    ).json()
    short = client.post(
        f"/v1/orders/{o2['id']}/payments", json={"provider": "wallet"}, headers=keys.headers("ops")
    )
    assert (short.status_code, short.json()["code"]) == (422, "insufficient_wallet_balance")
    assert order(client, keys, o2["id"])["status"] == "pending"
    # refunding a wallet-paid order gives the money back to the wallet
    back = refund(client, keys, o["id"]).json()
    assert back["status"] == "succeeded"
    wallet = client.get(f"/v1/customers/{cus}/wallet", headers=keys.headers("ops")).json()
    assert wallet["balances"] == {"EUR": 2500}
    declined = client.post(
        f"/v1/customers/{cus}/wallet/top-ups",
        json={"amount": 100, "currency": "EUR", "payment_method": "pm_card_chargeDeclined"},
        headers=keys.headers("ops"),
    ).json()
    assert declined["status"] == "failed"
    assert client.get(f"/v1/customers/{cus}/wallet", headers=keys.headers("ops")).json()[
        "balances"
    ] == {"EUR": 2500}
    unknown = client.post(
        "/v1/customers/cus_nope/wallet/top-ups",
        json={"amount": 100, "currency": "EUR", "payment_method": "pm_card_visa"},
        headers=keys.headers("ops"),
    )
    assert unknown.status_code == 404


def adjust(client: TestClient, keys: Keys, cus: str, role: str = "admin", **body: Any) -> Any:
    return client.post(f"/v1/customers/{cus}/wallet/adjust", json=body, headers=keys.headers(role))


def test_admin_adjustment_cases(shop: Kassa, client: TestClient, keys: Keys) -> None:
    cus = customer(client, keys)
    client.post(
        f"/v1/customers/{cus}/wallet/top-ups",
        json={"amount": 4000, "currency": "USD", "payment_method": "pm_card_visa"},
        headers=keys.headers("ops"),
    )
    ok = adjust(client, keys, cus, currency="usd", balance=5000, reason="goodwill")
    assert ok.status_code == 200
    assert ok.json() == {"prev_balance": 4000, "new_balance": 5000, "currency": "USD"}
    neg = adjust(client, keys, cus, currency="USD", balance=-250, reason="chargeback")
    assert neg.json() == {"prev_balance": 5000, "new_balance": -250, "currency": "USD"}
    wallet = client.get(f"/v1/customers/{cus}/wallet", headers=keys.headers("admin")).json()
    assert wallet["balances"] == {"USD": -250}
    assert wallet["lifetime_paid"] == {"USD": 4000}  # unchanged by adjustments
    assert [e["kind"] for e in wallet["entries"]] == ["adjustment", "adjustment", "top_up"]
    fresh = adjust(client, keys, cus, currency="JPY", balance=700, reason="new currency")
    assert fresh.json() == {"prev_balance": 0, "new_balance": 700, "currency": "JPY"}
    assert (
        adjust(client, keys, "cus_nope", currency="USD", balance=1, reason="x").status_code == 404
    )
    for body in (
        {"currency": "USD", "balance": 1.5, "reason": "x"},
        {"currency": "USD", "balance": "10", "reason": "x"},
        {"currency": "XXQ", "balance": 10, "reason": "x"},
        {"currency": "USD", "reason": "x"},
        {"currency": "USD", "balance": 10},
        {"currency": "USD", "balance": 10, "reason": "x", "extra": 1},
    ):
        bad = adjust(client, keys, cus, **body)
        assert bad.status_code == 422, body
        assert bad.json()["errors"]
    missing = client.post(
        f"/v1/customers/{cus}/wallet/adjust", json={"currency": "USD", "balance": 1, "reason": "x"}
    )
    assert missing.status_code == 401
    for role in ("ops", "analyst", "storefront"):
        assert (
            adjust(client, keys, cus, role=role, currency="USD", balance=1, reason="x").status_code
            == 403
        )
    audit = client.get(
        f"/v1/audit?subject={cus}&action=wallet.adjusted", headers=keys.headers("admin")
    ).json()["data"]
    assert len(audit) == 3
    with shop.db.transaction(read_only=True) as s:
        for row in s.scalars(select(WalletBalance)):
            ledger = s.scalar(
                select(func.sum(WalletEntry.amount)).where(
                    WalletEntry.customer_id == row.customer_id, WalletEntry.currency == row.currency
                )
            )
            assert row.balance == ledger


class SlowRefunds:
    """The mock gateway, but its refunds come back `pending` (as Stripe's do for some
    payment methods) and the provider's event settles them later."""

    name = "slow"

    def __init__(self, mock: Any) -> None:
        self._mock = mock

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._mock, attr)

    def refund(self, intent_id: str, amount: int, **kw: Any) -> Any:
        from dataclasses import replace

        from kassa.domain.refunds import RefundStatus

        return replace(self._mock.refund(intent_id, amount, **kw), status=RefundStatus.PENDING)


def test_a_refund_pending_at_the_provider_stays_pending(
    settings: Any, clock: Any, sleeps: Any, system: RequestContext
) -> None:
    from kassa.services.orders import LineRequest, NewOrder

    probe = Kassa(settings, clock=clock, sleep=sleeps)
    core = Kassa(
        settings, clock=clock, sleep=sleeps, extra_providers={"slow": SlowRefunds(probe.mock)}
    )
    try:
        core.catalogue.create(system, NewProduct("MUG", "Mug", 1000, "EUR", stock=None))
        order = core.orders.create(system, NewOrder("EUR", [LineRequest("MUG", 1)], email="p@x.io"))
        assert (
            core.payments.pay(
                system, order.id, provider="slow", payment_method="pm_card_visa"
            ).status
            == "succeeded"
        )
        refund = core.refunds.create(system, order.id, amount=400)
        assert refund.status == "pending" and refund.provider_refund_id
        assert core.orders.get(system, order.id).amount_refunded == 0
        again = core.refunds.create(system, order.id)  # the pending 400 is spoken for
        assert again.amount == 600
    finally:
        core.close()
        probe.close()


class RefusingRefunds(SlowRefunds):
    """The mock gateway, but every refund is refused outright (as Stripe refuses a refund of
    a charge that was disputed, say): a hard failure."""

    name = "refusing"

    def refund(self, intent_id: str, amount: int, **kw: Any) -> Any:
        from kassa.domain.payments import ErrorType, ProviderFailure
        from kassa.providers.base import ProviderError

        raise ProviderError(
            ProviderFailure(ErrorType.INVALID_REQUEST, "charge is disputed", "charge_disputed")
        )


def test_a_hard_provider_refusal_fails_the_refund_and_frees_the_amount(
    settings: Any, clock: Any, sleeps: Any, system: RequestContext
) -> None:
    from kassa.services.orders import LineRequest, NewOrder

    probe = Kassa(settings, clock=clock, sleep=sleeps)
    core = Kassa(
        settings,
        clock=clock,
        sleep=sleeps,
        extra_providers={"refusing": RefusingRefunds(probe.mock)},
    )
    try:
        core.catalogue.create(system, NewProduct("MUG", "Mug", 1000, "EUR", stock=None))
        order_ = core.orders.create(
            system, NewOrder("EUR", [LineRequest("MUG", 3)], email="h@x.io")
        )
        paid = core.payments.pay(
            system, order_.id, provider="refusing", payment_method="pm_card_visa"
        )
        assert paid.status == "succeeded"
        refused = core.refunds.create(system, order_.id, amount=900)
        assert refused.status == "failed" and refused.failure is not None
        assert (
            refused.failure["category"] == "hard" and refused.failure["code"] == "charge_disputed"
        )
        assert core.refunds.create(system, order_.id).amount == 3000  # nothing was held back
    finally:
        core.close()
        probe.close()
