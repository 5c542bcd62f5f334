"""Payment orchestration against the mock gateway's fault injection, on both databases."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select

from kassa.bootstrap import Kassa
from kassa.providers.base import ProviderError
from kassa.providers.mock.tables import MockCharge, MockIntent, MockRequest
from kassa.services.catalogue import NewProduct
from kassa.services.context import RequestContext
from kassa.storage.tables import PaymentAttempt
from tests.conftest import Keys, Sleeps
from tests.support import statements_sent

TRANSIENT = ["api_error", "rate_limit", "server_error", "timeout_before_send", "connection_error"]


@pytest.fixture
def shop(kassa: Kassa, system: RequestContext) -> Kassa:
    kassa.catalogue.create(system, NewProduct("MUG", "Mug", 1450, "EUR", stock=None))
    kassa.catalogue.create(system, NewProduct("BAG", "Bag", 9900, "EUR", stock=2))
    kassa.catalogue.create(system, NewProduct("VASE", "Vase", 18500, "EUR", unique=True))
    return kassa


def new_order(
    client: TestClient, keys: Keys, sku: str = "MUG", qty: int = 1, role: str = "storefront"
) -> dict[str, Any]:
    r = client.post(
        "/v1/orders",
        json={
            "email": "p@example.com",
            "currency": "EUR",
            "lines": [{"sku": sku, "quantity": qty}],
        },
        headers=keys.headers(role),
    )
    assert r.status_code == 201, r.text
    return r.json()


def pay(
    client: TestClient,
    keys: Keys,
    order: dict[str, Any],
    method: str | None,
    role: str = "storefront",
    **headers: str,
) -> Any:
    body = {"payment_method": method} if method else {}
    return client.post(
        f"/v1/orders/{order['id']}/payments", json=body, headers=keys.headers(role, **headers)
    )


def confirm_at_sandbox(
    client: TestClient, keys: Keys, payment: dict[str, Any], method: str
) -> dict[str, Any]:
    """The shopper's browser confirms the payment's intent at the sandbox (3-D Secure, or
    the browser flow's card): the payment as kassa answers it."""
    answer: dict[str, Any] = client.post(
        f"/v1/providers/mock/intents/{payment['provider_payment_id']}/confirm",
        json={"payment_method": method},
        headers=keys.headers("storefront"),
    ).json()
    return answer


def charges(kassa: Kassa, order_id: str) -> int:
    with kassa.db.transaction(read_only=True) as s:
        return int(s.scalar(select(func.count()).where(MockCharge.order_ref == order_id)) or 0)


def provider_keys(kassa: Kassa, payment_id: str) -> list[tuple[str, str | None, str | None]]:
    with kassa.db.transaction(read_only=True) as s:
        rows = s.scalars(
            select(MockRequest).where(MockRequest.reference == payment_id).order_by(MockRequest.pk)
        )
        return [(r.operation, r.idempotency_key, r.fault) for r in rows]


def outcomes(payment: dict[str, Any]) -> list[tuple[str, str]]:
    return [(a["operation"], a["outcome"]) for a in payment["attempts"]]


def test_success_marks_the_order_paid(shop: Kassa, client: TestClient, keys: Keys) -> None:
    order = new_order(client, keys)
    r = pay(client, keys, order, "pm_card_visa")
    assert r.status_code == 201
    p = r.json()
    assert p["status"] == "succeeded"
    assert p["id"].startswith("pay_") and p["provider"] == "mock"
    assert (p["amount"], p["currency"]) == (1450, "EUR")
    assert outcomes(p) == [("create_intent", "succeeded"), ("confirm_intent", "succeeded")]
    assert (p["retry_count"], p["recovered_by_retry"]) == (0, False)
    got = client.get(f"/v1/orders/{order['id']}", headers=keys.headers("storefront")).json()
    assert (got["status"], got["amount_paid"]) == ("paid", 1450)
    assert got["paid_at"] is not None
    assert charges(shop, order["id"]) == 1
    assert client.get(f"/v1/payments/{p['id']}", headers=keys.headers("analyst")).json() == p


def test_only_a_payment_made_with_a_fault_script_looks_one_up(
    shop: Kassa, client: TestClient, keys: Keys
) -> None:
    """The sandbox reads a payment's fault script only for an intent created with one: a
    usual payment's calls skip that read; a scripted one still meets its faults."""
    seen: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        seen.append(statement)

    event.listen(shop.db.engine, "before_cursor_execute", note)
    try:
        plain = pay(client, keys, new_order(client, keys), "pm_card_visa").json()
    finally:
        event.remove(shop.db.engine, "before_cursor_execute", note)
    assert plain["status"] == "succeeded"
    assert not [s for s in seen if "mock_fault_scripts" in s]
    scripted = pay(client, keys, new_order(client, keys), "pm_card_visa|ok,api_error").json()
    assert scripted["status"] == "succeeded" and scripted["retry_count"] == 1
    with shop.db.transaction(read_only=True) as s:
        flags = {
            ref: bool(on)
            for ref, on in s.execute(select(MockIntent.reference, MockIntent.scripted))
        }
    assert flags == {plain["id"]: False, scripted["id"]: True}


@pytest.mark.parametrize("fault", TRANSIENT)
@pytest.mark.parametrize("call", ["create", "confirm"])
def test_each_transient_fault_is_retried_once_with_the_same_key_and_recovers(
    shop: Kassa, client: TestClient, keys: Keys, sleeps: Sleeps, fault: str, call: str
) -> None:
    order = new_order(client, keys)
    script = fault if call == "create" else f"ok,{fault}"
    p = pay(client, keys, order, f"pm_card_visa|{script}").json()
    assert p["status"] == "succeeded", p
    assert (p["retry_count"], p["recovered_by_retry"]) == (1, True)
    operation = f"{call}_intent"
    failed = [a for a in p["attempts"] if a["outcome"] == "soft_failure"]
    assert [a["operation"] for a in failed] == [operation]
    retried = p["attempts"][failed[0]["number"]]  # the attempt after the failure
    assert retried["operation"] == operation and retried["outcome"] == "succeeded"
    assert 0 < retried["retry_delay_ms"] < 3000
    assert len(sleeps.seconds) == 1 and sleeps.seconds[0] < 3
    calls = [(op, key) for op, key, _ in provider_keys(shop, p["id"]) if op == operation]
    assert len(calls) == 2 and calls[0][1] == calls[1][1]  # same provider idempotency key
    assert charges(shop, order["id"]) == 1


@pytest.mark.parametrize(
    ("method", "category", "decline"),
    [
        ("pm_card_chargeDeclined", "hard", "generic_decline"),
        ("4000000000000002", "hard", "generic_decline"),
        ("pm_card_visa_chargeDeclinedInsufficientFunds", "soft", "insufficient_funds"),
        ("4000000000009995", "soft", "insufficient_funds"),
    ],
)
def test_declines_are_never_retried(
    shop: Kassa,
    client: TestClient,
    keys: Keys,
    sleeps: Sleeps,
    method: str,
    category: str,
    decline: str,
) -> None:
    order = new_order(client, keys)
    p = pay(client, keys, order, method).json()
    assert p["status"] == "failed"
    assert p["failure"]["category"] == category
    assert (p["failure"]["type"], p["failure"]["code"], p["failure"]["decline_code"]) == (
        "card_declined",
        "card_declined",
        decline,
    )
    assert p["retry_count"] == 0 and p["no_retry_reason"] == "not_retryable"
    assert [a["outcome"] for a in p["attempts"]][-1] == f"{category}_failure"
    assert sleeps.seconds == []
    assert charges(shop, order["id"]) == 0
    got = client.get(f"/v1/orders/{order['id']}", headers=keys.headers("storefront")).json()
    assert got["status"] == "pending"
    # a declined order may be paid again with another card
    assert pay(client, keys, order, "pm_card_visa").json()["status"] == "succeeded"


@pytest.mark.parametrize("script", ["timeout_after_send", "ok,timeout_after_send"])
def test_lost_answers_are_looked_up_and_never_charge_twice(
    shop: Kassa, client: TestClient, keys: Keys, sleeps: Sleeps, script: str
) -> None:
    order = new_order(client, keys)
    p = pay(client, keys, order, f"pm_card_visa|{script}").json()
    assert p["status"] == "succeeded"
    assert "unknown" in [a["outcome"] for a in p["attempts"]]
    assert p["retry_count"] == 0  # resolved by the look-up, not by a retry
    assert sleeps.seconds == []
    assert charges(shop, order["id"]) == 1


def test_timeout_after_send_then_transient_still_charges_once(
    shop: Kassa, client: TestClient, keys: Keys
) -> None:
    order = new_order(client, keys)
    p = pay(client, keys, order, "pm_card_visa|ok,timeout_after_send,rate_limit").json()
    assert p["status"] == "succeeded"
    assert charges(shop, order["id"]) == 1


def test_at_most_one_retry(shop: Kassa, client: TestClient, keys: Keys, sleeps: Sleeps) -> None:
    order = new_order(client, keys)
    p = pay(client, keys, order, "pm_card_visa|api_error,api_error").json()
    assert p["status"] == "failed"
    assert p["retry_count"] == 1 and p["no_retry_reason"] == "retries_exhausted"
    assert p["failure"]["category"] == "soft" and p["failure"]["type"] == "api_error"
    assert len(sleeps.seconds) == 1
    assert charges(shop, order["id"]) == 0


def _degrade_mock(client: TestClient, keys: Keys, shop: Kassa) -> None:
    for _ in range(shop.settings.health_min_attempts):
        order = new_order(client, keys)
        pay(client, keys, order, "pm_card_visa|api_error,api_error")
    shop.gateway_health.forget_cache()


def test_a_degraded_gateway_gets_no_retry(shop: Kassa, client: TestClient, keys: Keys) -> None:
    _degrade_mock(client, keys, shop)
    health = client.get("/v1/gateways/health", headers=keys.headers("analyst")).json()
    assert (health["object"], health["has_more"]) == ("list", False)
    mock = next(h for h in health["data"] if h["provider"] == "mock")
    assert mock["object"] == "gateway_health"
    assert mock["state"] == "degraded"
    # every attempt failed; how many there were depends on when the degradation was first
    # seen (a degraded gateway gets no retry), which the health cache makes timing-dependent
    assert mock["failure_rate"] == 1.0
    assert (
        shop.settings.health_min_attempts
        <= mock["attempts"]
        <= 2 * shop.settings.health_min_attempts
    )
    order = new_order(client, keys)
    p = pay(client, keys, order, "pm_card_visa|api_error").json()
    assert p["status"] == "failed"
    assert (p["retry_count"], p["no_retry_reason"]) == (0, "gateway_degraded")
    # a payment that needs no retry still goes through
    assert (
        pay(client, keys, new_order(client, keys), "pm_card_visa").json()["status"] == "succeeded"
    )


def test_requires_action_returns_next_action_and_is_not_a_failure(
    shop: Kassa, client: TestClient, keys: Keys
) -> None:
    for _ in range(shop.settings.health_min_attempts):
        order = new_order(client, keys)
        p = pay(client, keys, order, "pm_card_authenticationRequired").json()
        assert p["status"] == "requires_action"
        assert p["next_action"]["type"] == "use_stripe_sdk"
        assert p["failure"] is None
    shop.gateway_health.forget_cache()
    mock = next(
        h
        for h in client.get("/v1/gateways/health", headers=keys.headers("analyst")).json()["data"]
        if h["provider"] == "mock"
    )
    assert (mock["state"], mock["failure_rate"]) == ("healthy", 0.0)
    # the shopper completes 3-D Secure: the payment and the order follow
    done = confirm_at_sandbox(client, keys, p, "pm_card_authenticationRequired")
    assert done["status"] == "succeeded"
    got = client.get(f"/v1/orders/{order['id']}", headers=keys.headers("storefront")).json()
    assert got["status"] == "paid"


def test_browser_flow_returns_a_client_secret(shop: Kassa, client: TestClient, keys: Keys) -> None:
    order = new_order(client, keys)
    r = pay(client, keys, order, None)
    assert r.status_code == 201
    p = r.json()
    assert p["status"] == "requires_action"
    assert p["client_secret"].startswith(p["provider_payment_id"] + "_secret_")
    assert outcomes(p) == [("create_intent", "succeeded")]
    assert charges(shop, order["id"]) == 0
    confirmed = confirm_at_sandbox(client, keys, p, "pm_card_visa")
    assert confirmed["status"] == "succeeded"
    assert charges(shop, order["id"]) == 1
    declined_order = new_order(client, keys)
    p2 = pay(client, keys, declined_order, None).json()
    declined = confirm_at_sandbox(client, keys, p2, "pm_card_chargeDeclined")
    assert declined["status"] == "failed"
    assert declined["failure"]["decline_code"] == "generic_decline"


def test_the_browser_confirm_reads_the_payments_attempts_once(
    shop: Kassa, client: TestClient, keys: Keys
) -> None:
    """The confirm's settlement shows the payment twice, in its `payment.succeeded` event
    and in the answer: one read of the attempts serves both, and both are what
    GET /v1/payments/{id} shows."""
    p = pay(client, keys, new_order(client, keys), None).json()
    with statements_sent(shop) as seen:
        confirmed = confirm_at_sandbox(client, keys, p, "pm_card_visa")
    assert confirmed["status"] == "succeeded"
    assert (
        len([s for s in seen if s.lstrip().startswith("SELECT") and "payment_attempts" in s]) == 1
    )
    got = client.get(f"/v1/payments/{p['id']}", headers=keys.headers("analyst")).json()
    assert confirmed == got
    assert outcomes(got) == [("create_intent", "succeeded")]
    (succeeded,) = [
        e
        for e in shop.event_log.of_order(got["order"])
        if e.type == "payment.succeeded" and e.data["object"]["id"] == p["id"]
    ]
    assert succeeded.data["object"]["attempts"] == got["attempts"]


def test_payment_rules_for_orders(shop: Kassa, client: TestClient, keys: Keys) -> None:
    order = new_order(client, keys)
    assert pay(client, keys, order, "pm_card_visa").status_code == 201
    again = pay(client, keys, order, "pm_card_visa")
    assert again.status_code == 409 and again.json()["code"] == "order_not_pending"
    pending = new_order(client, keys)
    assert pay(client, keys, pending, "pm_card_authenticationRequired").status_code == 201
    busy = pay(client, keys, pending, "pm_card_visa")
    assert busy.status_code == 409 and busy.json()["code"] == "payment_in_progress"
    cancel = client.post(f"/v1/orders/{pending['id']}/cancel", headers=keys.headers("ops"))
    assert cancel.status_code == 409 and cancel.json()["code"] == "payment_in_progress"
    others = pay(client, keys, new_order(client, keys), "pm_card_visa", role="other_storefront")
    assert others.status_code == 404 and others.json()["code"] == "order_not_found"
    analyst = pay(client, keys, new_order(client, keys), "pm_card_visa", role="analyst")
    assert analyst.status_code == 403
    bogus = client.post(
        f"/v1/orders/{new_order(client, keys)['id']}/payments",
        json={"payment_method": "pm_card_visa", "provider": "nope"},
        headers=keys.headers("storefront"),
    )
    assert bogus.status_code == 422 and bogus.json()["code"] == "provider_not_enabled"
    missing = client.post("/v1/orders/ord_nope/payments", json={}, headers=keys.headers("ops"))
    assert missing.status_code == 404


def test_paying_takes_the_goods(shop: Kassa, client: TestClient, keys: Keys) -> None:
    vase_order = new_order(client, keys, "VASE")
    pay(client, keys, vase_order, "pm_card_visa")
    vase = client.get("/v1/products/VASE", headers=keys.headers("ops")).json()
    assert vase["status"] == "sold"
    first, second = new_order(client, keys, "BAG", 2), new_order(client, keys, "BAG", 1)
    pay(client, keys, first, "pm_card_visa")
    assert client.get("/v1/products/BAG", headers=keys.headers("ops")).json()["stock"] == 0
    paid_short = pay(client, keys, second, "pm_card_visa").json()
    assert paid_short["status"] == "succeeded"
    got = client.get(f"/v1/orders/{second['id']}", headers=keys.headers("ops")).json()
    assert (got["status"], got["stock_shortage"]) == ("paid", True)
    assert client.get("/v1/products/BAG", headers=keys.headers("ops")).json()["stock"] == 0


def test_idempotency_key_is_honoured_and_carried_to_the_provider(
    shop: Kassa, client: TestClient, keys: Keys
) -> None:
    order = new_order(client, keys)
    first = pay(client, keys, order, "pm_card_visa", **{"Idempotency-Key": "pay-1"})
    again = pay(client, keys, order, "pm_card_visa", **{"Idempotency-Key": "pay-1"})
    assert again.content == first.content and again.headers["idempotent-replayed"] == "true"
    sent = provider_keys(shop, first.json()["id"])
    assert {op for op, _, _ in sent} == {"create_intent", "confirm_intent"}
    assert all(key is not None and key.startswith("kassa:req:") for _, key, _ in sent)
    assert charges(shop, order["id"]) == 1


def test_analytics(shop: Kassa, client: TestClient, keys: Keys) -> None:
    pay(client, keys, new_order(client, keys), "pm_card_visa")
    pay(client, keys, new_order(client, keys), "pm_card_visa|api_error")
    pay(client, keys, new_order(client, keys), "pm_card_visa|rate_limit,rate_limit")
    pay(client, keys, new_order(client, keys), "pm_card_chargeDeclined")
    r = client.get("/v1/analytics/payments?window=1h", headers=keys.headers("analyst"))
    assert r.status_code == 200
    a = r.json()
    assert a["payments"] == 4 and a["succeeded"] == 2
    assert a["needed_retry"] == 2 and a["recovered_by_retry"] == 1 and a["recovered_pct"] == 50.0
    assert a["failure_types"] == {"api_error": 1, "rate_limit_error": 2, "card_error": 1}
    with shop.db.transaction(read_only=True) as s:
        assert a["attempts"] == s.scalar(select(func.count()).select_from(PaymentAttempt))
    assert 0 < a["avg_retry_delay_ms"] < 3000
    assert (
        client.get("/v1/analytics/payments", headers=keys.headers("storefront")).status_code == 403
    )
    bad = client.get("/v1/analytics/payments?window=forever", headers=keys.headers("analyst"))
    assert bad.status_code == 422


def test_mock_provider_records_can_be_listed_by_admins(
    shop: Kassa, client: TestClient, keys: Keys
) -> None:
    order = new_order(client, keys)
    pay(client, keys, order, "pm_card_visa")
    listed = client.get(
        f"/v1/providers/mock/charges?order={order['id']}", headers=keys.headers("admin")
    )
    assert listed.status_code == 200
    [charge] = listed.json()["data"]
    assert (charge["amount"], charge["currency"], charge["status"]) == (1450, "EUR", "succeeded")
    assert client.get("/v1/providers/mock/charges", headers=keys.headers("ops")).status_code == 403
    assert (
        client.get(
            f"/v1/providers/mock/refunds?order={order['id']}", headers=keys.headers("admin")
        ).json()["data"]
        == []
    )


def test_the_sandbox_replays_a_refund_key_as_stripe_does(
    shop: Kassa, client: TestClient, keys: Keys
) -> None:
    """A key's first answer is its answer: a refusal (more than is left) is replayed even
    for a request that would now succeed; a refund is replayed, never made twice."""
    paid = pay(client, keys, new_order(client, keys), "pm_card_visa").json()
    intent = paid["provider_payment_id"]
    refund = shop.mock.refund

    with pytest.raises(ProviderError) as refused:
        refund(intent, 5000, idempotency_key="k-too-much", reference="r1")
    assert refused.value.failure.code == "charge_already_refunded"
    with pytest.raises(ProviderError) as again:
        refund(intent, 100, idempotency_key="k-too-much", reference="r1")
    assert again.value.failure.code == "charge_already_refunded"

    first = refund(intent, 100, idempotency_key="k-ok", reference="r2")
    assert refund(intent, 100, idempotency_key="k-ok", reference="r2").id == first.id
    with shop.db.transaction(read_only=True) as s:
        refunded = s.scalar(
            select(MockCharge.amount_refunded).where(MockCharge.intent_id == intent)
        )
    assert refunded == 100
