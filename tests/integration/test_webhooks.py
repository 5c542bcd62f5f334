"""Provider webhooks: signatures, deduplication, order-independent effects."""

from __future__ import annotations

import random
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from kassa.api.app import create_app
from kassa.bootstrap import Kassa
from kassa.config import Settings
from kassa.services.catalogue import NewProduct
from kassa.services.context import RequestContext
from kassa.services.webhooks import APPLY_EVENT
from kassa.storage.tables import Job, ProviderEvent, Refund
from kassa.worker import Worker
from tests import builders
from tests.conftest import FakeClock, Keys
from tests.events import MOCK_SECRET, charge_refunded, dispute, event, intent, signed


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, mock_webhook_secrets=(MOCK_SECRET, "whsec_new"))


def now(clock: FakeClock) -> int:
    return int(clock.now.timestamp())


def stored(kassa: Kassa) -> tuple[int, int]:
    """Events stored, and the jobs that apply them."""
    with kassa.db.transaction(read_only=True) as s:
        events = s.scalar(select(func.count()).select_from(ProviderEvent)) or 0
        jobs = s.scalar(select(func.count()).where(Job.kind == APPLY_EVENT)) or 0
    return int(events), int(jobs)


def post(client: TestClient, body: bytes, headers: dict[str, str], provider: str = "mock") -> Any:
    return client.post(f"/v1/webhooks/{provider}", content=body, headers=headers)


BODY = event("evt_1", "payment_intent.succeeded", intent("pi_1", "pay_x", 100))


def test_valid_signature_is_acknowledged(
    client: TestClient, kassa: Kassa, clock: FakeClock
) -> None:
    r = post(client, BODY, signed(BODY, now(clock)))
    assert r.status_code == 200
    assert r.json() == {"received": True, "duplicate": False}
    assert stored(kassa) == (1, 1)


def test_rotated_secret_is_accepted(client: TestClient, kassa: Kassa, clock: FakeClock) -> None:
    assert post(client, BODY, signed(BODY, now(clock), "whsec_new")).status_code == 200
    two = signed(BODY, now(clock), "whsec_wrong")
    two["Stripe-Signature"] += (
        "," + signed(BODY, now(clock), "whsec_new")["Stripe-Signature"].split(",")[1]
    )
    other = event("evt_2", "payment_intent.succeeded", intent("pi_1", "pay_x", 100))
    assert post(client, other, signed(other, now(clock), MOCK_SECRET)).status_code == 200


@pytest.mark.parametrize(
    "case",
    ["wrong_secret", "stale", "future", "tampered", "missing", "malformed", "no_v1", "bad_hex"],
)
def test_bad_signatures_are_400_and_store_nothing(
    client: TestClient, kassa: Kassa, clock: FakeClock, case: str
) -> None:
    t = now(clock)
    headers = signed(BODY, t)
    body = BODY
    if case == "wrong_secret":
        headers = signed(BODY, t, "whsec_wrong")
    elif case == "stale":
        headers = signed(BODY, t - 301)
    elif case == "future":
        headers = signed(BODY, t + 301)
    elif case == "tampered":
        body = BODY.replace(b"100", b"999")
    elif case == "missing":
        del headers["Stripe-Signature"]
    elif case == "malformed":
        headers["Stripe-Signature"] = "garbage"
    elif case == "no_v1":
        headers["Stripe-Signature"] = f"t={t}"
    elif case == "bad_hex":
        headers["Stripe-Signature"] = f"t={t},v1=zz"
    r = post(client, body, headers)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "invalid_signature"
    assert stored(kassa) == (0, 0)


def test_within_tolerance_is_fine(client: TestClient, clock: FakeClock) -> None:
    assert post(client, BODY, signed(BODY, now(clock) - 299)).status_code == 200


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"id": "evt_1"}', b'{"id": 1, "type": "x", "data": {"object": {}}}'],
)
def test_malformed_events_are_400_and_store_nothing(
    client: TestClient, kassa: Kassa, clock: FakeClock, body: bytes
) -> None:
    r = post(client, body, signed(body, now(clock)))
    assert r.status_code == 400 and r.json()["code"] == "malformed_event"
    assert stored(kassa) == (0, 0)


def test_unknown_provider_is_404(client: TestClient, clock: FakeClock) -> None:
    assert post(client, BODY, signed(BODY, now(clock)), provider="paypal").status_code == 404


def test_stripe_without_a_secret_refuses_everything(database_url: str, clock: FakeClock) -> None:
    settings = Settings(database_url=database_url, stripe_secret_key="sk_test_no_webhook_secret")
    core = Kassa(settings, clock=clock)
    try:
        with TestClient(create_app(core)) as stripe_client:
            r = post(stripe_client, BODY, signed(BODY, now(clock)), provider="stripe")
    finally:
        core.close()
    assert r.status_code == 400 and r.json()["code"] == "invalid_signature"


def test_no_webhook_route_for_a_provider_not_enabled(client: TestClient, clock: FakeClock) -> None:
    r = post(client, BODY, signed(BODY, now(clock)), provider="stripe")  # Stripe not configured
    assert r.status_code == 404 and r.json()["code"] == "unknown_provider"


# -- effects ----------------------------------------------------------------------------


@pytest.fixture
def shop(kassa: Kassa, system: RequestContext) -> Kassa:
    kassa.catalogue.create(system, NewProduct("MUG", "Mug", 1000, "EUR", stock=500))
    kassa.catalogue.create(system, NewProduct("VASE", "Vase", 5000, "EUR", unique=True))
    return kassa


def browser_payment(client: TestClient, keys: Keys, sku: str = "MUG") -> dict[str, Any]:
    order = client.post(
        "/v1/orders",
        json={"email": "w@example.com", "currency": "EUR", "lines": [{"sku": sku, "quantity": 1}]},
        headers=keys.headers("storefront"),
    ).json()
    payment = client.post(
        f"/v1/orders/{order['id']}/payments", json={}, headers=keys.headers("storefront")
    ).json()
    assert payment["status"] == "requires_action", payment
    return payment


def settle(kassa: Kassa, clock: FakeClock) -> None:
    """Run the worker until nothing is left, moving time past every backoff."""
    worker = Worker(kassa, name="test-worker")
    for _ in range(50):
        worker.drain()
        with kassa.db.transaction(read_only=True) as s:
            waiting = s.scalar(select(func.count()).where(Job.state.in_(["queued", "running"])))
        if not waiting:
            return
        clock.advance(3600)
    raise AssertionError("jobs never settled")


def order_state(client: TestClient, keys: Keys, order_id: str) -> dict[str, Any]:
    o = client.get(f"/v1/orders/{order_id}", headers=keys.headers("admin")).json()
    return {
        k: o[k]
        for k in ("status", "amount_paid", "amount_refunded", "refund_status", "stock_shortage")
    }


def test_200_duplicate_deliveries_apply_once(
    shop: Kassa, client: TestClient, keys: Keys, clock: FakeClock
) -> None:
    p = browser_payment(client, keys)
    body = event(
        "evt_dup", "payment_intent.succeeded", intent(p["provider_payment_id"], p["id"], 1000)
    )
    answers = [post(client, body, signed(body, now(clock))).json() for _ in range(200)]
    assert answers[0] == {"received": True, "duplicate": False}
    assert all(a == {"received": True, "duplicate": True} for a in answers[1:])
    assert stored(shop) == (1, 1)
    settle(shop, clock)
    state = order_state(client, keys, p["order"])
    assert state["status"] == "paid" and state["amount_paid"] == 1000
    assert client.get("/v1/products/MUG", headers=keys.headers("ops")).json()["stock"] == 499
    with shop.db.transaction(read_only=True) as s:
        assert s.scalar(select(ProviderEvent.deliveries)) == 200


def card_payment(client: TestClient, keys: Keys) -> dict[str, Any]:
    """A payment the storefront settled itself (the card succeeded in the request)."""
    payment = builders.pay(client, keys, builders.order(client, keys)["id"])
    assert payment["status"] == "succeeded", payment
    return payment


def event_row(kassa: Kassa, event_id: str) -> Any:
    with kassa.db.transaction(read_only=True) as s:
        return s.execute(
            select(ProviderEvent.applied_at, ProviderEvent.outcome, ProviderEvent.deliveries).where(
                ProviderEvent.event_id == event_id
            )
        ).one()


def test_the_success_of_a_payment_already_settled_is_stored_applied_without_a_job(
    shop: Kassa, client: TestClient, keys: Keys, clock: FakeClock
) -> None:
    """The webhook that follows every payment the storefront settled itself: what its job
    would conclude (succeeded is final) is stored as it is acknowledged, and no job runs."""
    paid = card_payment(client, keys)
    body = event(
        "evt_late",
        "payment_intent.succeeded",
        intent(paid["provider_payment_id"], paid["id"], 1000),
    )
    for n in range(3):  # then delivered again: duplicates, counted as before
        answer = post(client, body, signed(body, now(clock))).json()
        assert answer == {"received": True, "duplicate": n > 0}
    assert stored(shop) == (1, 0)
    applied_at, outcome, deliveries = event_row(shop, "evt_late")
    assert (applied_at is not None, outcome, deliveries) == (True, "already succeeded", 3)
    Worker(shop, name="w").drain()  # the sandbox's own jobs; none applies an event
    assert stored(shop) == (1, 0)


def test_a_success_not_yet_settled_still_gets_its_job(
    shop: Kassa, client: TestClient, keys: Keys, clock: FakeClock
) -> None:
    """Only a payment that has succeeded settles an event as it is stored: one still
    waiting goes the usual way, a job that applies it. (Another provider's event naming a
    settled payment: tests/integration/test_provider_isolation.py.)"""
    waiting = browser_payment(client, keys)
    card_payment(client, keys)
    early = event(
        "evt_early",
        "payment_intent.succeeded",
        intent(waiting["provider_payment_id"], waiting["id"], 1000),
    )
    assert post(client, early, signed(early, now(clock))).status_code == 200
    assert stored(shop) == (1, 1) and event_row(shop, "evt_early")[0] is None
    settle(shop, clock)
    assert event_row(shop, "evt_early")[1] == "payment succeeded"
    assert order_state(client, keys, waiting["order"])["status"] == "paid"


def _stream(payments: list[dict[str, Any]], prefix: str, rng: random.Random) -> list[bytes]:
    """Ten events per order: the life of a payment, with repeats and refunds."""
    out: list[bytes] = []
    for n, p in enumerate(payments):
        pi, pid = p["provider_payment_id"], p["id"]
        refunds = [(f"re_{prefix}{n}_a", 100), (f"re_{prefix}{n}_b", 250)]
        life = [
            event(f"evt_{prefix}{n}_ra", "payment_intent.requires_action", intent(pi, pid, 1000)),
            event(f"evt_{prefix}{n}_ok", "payment_intent.succeeded", intent(pi, pid, 1000)),
            event(f"evt_{prefix}{n}_r1", "charge.refunded", charge_refunded(pi, pid, refunds[:1])),
            event(f"evt_{prefix}{n}_r2", "charge.refunded", charge_refunded(pi, pid, refunds)),
            event(
                f"evt_{prefix}{n}_late",
                "payment_intent.payment_failed",
                intent(
                    pi,
                    pid,
                    1000,
                    last_payment_error={"type": "card_error", "code": "card_declined"},
                ),
            ),
        ]
        if n % 3 == 0:
            life.append(
                event(f"evt_{prefix}{n}_dp", "charge.dispute.created", dispute(pi, pid, 650))
            )
        while len(life) < 10:
            life.append(rng.choice(life))  # redeliveries
        out.extend(life)
    return out


def test_a_shuffled_stream_ends_like_an_in_order_one(
    shop: Kassa, client: TestClient, keys: Keys, clock: FakeClock
) -> None:
    rng = random.Random(20261123)
    in_order = [browser_payment(client, keys) for _ in range(100)]
    shuffled = [browser_payment(client, keys) for _ in range(100)]
    first = _stream(in_order, "a", rng)
    second = _stream(shuffled, "b", rng)
    assert len(second) == 1000
    for body in first:  # one at a time, each applied before the next arrives
        assert post(client, body, signed(body, now(clock))).status_code == 200
        settle(shop, clock)
    rng.shuffle(second)
    for body in second:
        assert post(client, body, signed(body, now(clock))).status_code == 200
    settle(shop, clock)

    for a, b in zip(in_order, shuffled, strict=True):
        sa, sb = order_state(client, keys, a["order"]), order_state(client, keys, b["order"])
        assert sa == sb
        assert sa == {
            "status": "paid",
            "amount_paid": 1000,
            "amount_refunded": 350,
            "refund_status": "partial",
            "stock_shortage": False,
        }
        pa = client.get(f"/v1/payments/{a['id']}", headers=keys.headers("admin")).json()
        pb = client.get(f"/v1/payments/{b['id']}", headers=keys.headers("admin")).json()
        assert pa["status"] == pb["status"] == "succeeded"
    with shop.db.transaction(read_only=True) as s:
        assert s.scalar(select(func.count()).select_from(Refund)) == 400
        dead = s.scalar(select(func.count()).where(Job.state == "dead"))
        assert dead == 0
    assert client.get("/v1/products/MUG", headers=keys.headers("ops")).json()["stock"] == 300
    disputed = [
        client.get(f"/v1/orders/{p['order']}", headers=keys.headers("admin")).json()
        for p in in_order[::3] + shuffled[::3]
    ]
    assert all(d["disputed"] for d in disputed)


def test_an_event_about_an_unknown_payment_waits_and_is_not_dropped(
    shop: Kassa, client: TestClient, keys: Keys, clock: FakeClock
) -> None:
    body = event("evt_early", "payment_intent.succeeded", intent("pi_later", "pay_later", 1000))
    post(client, body, signed(body, now(clock)))
    Worker(shop, name="w").drain()
    with shop.db.transaction(read_only=True) as s:
        job = s.scalar(select(Job))
        assert job is not None and job.state == "queued" and "RetryLater" in (job.last_error or "")
        assert s.scalar(select(ProviderEvent.applied_at)) is None
