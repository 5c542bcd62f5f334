"""Issue 8, finding 4: a payment cut off mid-flight (the process killed, or the database gone,
between the provider call and kassa's write) is settled by the worker.

The cut is made by hand: the payment is opened exactly as `Payments.pay` opens it, the
provider is called (or not) with the payment's own idempotency keys, and kassa's settling
write never happens. After KASSA_PAYMENT_RESUME_AFTER_S the resume job asks the provider
with the same keys and settles the payment either way; nothing is charged twice.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from kassa.bootstrap import Kassa
from kassa.domain.roles import Role
from kassa.providers.base import ProviderError
from kassa.providers.mock.tables import MockCharge
from kassa.services import idempotency
from kassa.services.catalogue import NewProduct
from kassa.services.context import RequestContext
from kassa.services.settlement import RESUME_PAYMENT
from kassa.storage.tables import Job, Payment
from kassa.worker import Worker
from tests import builders
from tests.conftest import FakeClock, Keys


@pytest.fixture
def shop(kassa: Kassa, system: RequestContext) -> Kassa:
    kassa.catalogue.create(system, NewProduct("VASE", "Vase", 18500, "EUR", unique=True))
    kassa.catalogue.create(system, NewProduct("MUG", "Mug", 1450, "EUR"))
    return kassa


def storefront(keys: Keys) -> RequestContext:
    return RequestContext(keys.ids["storefront"], Role.STOREFRONT)


def new_order(client: TestClient, keys: Keys, sku: str = "VASE") -> dict[str, Any]:
    return builders.order(client, keys, lines=[(sku, 1)], email="r@example.com")


def cut_off(
    kassa: Kassa, ctx: RequestContext, order_id: str, method: str | None, *, reach: str
) -> str:
    """Open a payment as `pay` does, then die: before the provider (`reach="nothing"`),
    after creating the intent ("create"), or after the charge ("charge")."""
    payment_id, request, base = kassa.payments._open(ctx, order_id, "mock", method, None)
    if reach in ("create", "charge"):
        intent = kassa.mock.create_intent(request, idempotency_key=f"{base}:create")
        if reach == "charge":
            with contextlib.suppress(ProviderError):  # a decline's answer is lost too
                kassa.mock.confirm_intent(intent.id, idempotency_key=f"{base}:confirm")
    return payment_id


def state(client: TestClient, keys: Keys, order_id: str, payment_id: str) -> tuple[str, str]:
    order = client.get(f"/v1/orders/{order_id}", headers=keys.headers("admin")).json()
    payment = client.get(f"/v1/payments/{payment_id}", headers=keys.headers("admin")).json()
    return order["status"], payment["status"]


def charges(kassa: Kassa, order_id: str) -> int:
    with kassa.db.transaction(read_only=True) as s:
        return int(s.scalar(select(func.count()).where(MockCharge.order_ref == order_id)) or 0)


def work(kassa: Kassa) -> int:
    return Worker(kassa, name="t").drain()


def blocked_until_resumed(
    shop: Kassa, client: TestClient, keys: Keys, clock: FakeClock, order: dict[str, Any], pid: str
) -> None:
    """While the payment is open the order can be neither paid again nor cancelled, and
    the job waits KASSA_PAYMENT_RESUME_AFTER_S (the request may still be at the provider)."""
    assert state(client, keys, order["id"], pid) == ("pending", "processing")
    again = client.post(
        f"/v1/orders/{order['id']}/payments",
        json={"payment_method": "pm_card_visa"},
        headers=keys.headers("storefront"),
    )
    assert again.status_code == 409 and again.json()["code"] == "payment_in_progress"
    cancel = client.post(f"/v1/orders/{order['id']}/cancel", headers=keys.headers("ops"))
    assert cancel.status_code == 409 and cancel.json()["code"] == "payment_in_progress"
    work(shop)  # too early
    assert state(client, keys, order["id"], pid) == ("pending", "processing")
    clock.advance(shop.settings.payment_resume_after_s + 1)
    work(shop)


def test_a_payment_cut_off_after_the_charge_is_settled_by_the_worker(
    shop: Kassa, client: TestClient, keys: Keys, clock: FakeClock
) -> None:
    order = new_order(client, keys)
    payment_id = cut_off(shop, storefront(keys), order["id"], "pm_card_visa", reach="charge")
    blocked_until_resumed(shop, client, keys, clock, order, payment_id)
    assert state(client, keys, order["id"], payment_id) == ("paid", "succeeded")
    assert charges(shop, order["id"]) == 1
    vase = client.get("/v1/products/VASE", headers=keys.headers("admin")).json()
    assert vase["status"] == "sold"
    # the job is done once; running the worker again changes nothing
    clock.advance(3600)
    work(shop)
    assert charges(shop, order["id"]) == 1


@pytest.mark.parametrize("reach", ["create", "nothing"])
def test_a_payment_cut_off_before_the_charge_fails_and_charges_nothing(
    shop: Kassa, client: TestClient, keys: Keys, clock: FakeClock, reach: str
) -> None:
    """The worker never charges on a request that may have been abandoned: the intent is
    canceled at the provider (so a late confirm cannot charge it) and the payment fails;
    the shopper pays again."""
    order = new_order(client, keys)
    payment_id = cut_off(shop, storefront(keys), order["id"], "pm_card_visa", reach=reach)
    blocked_until_resumed(shop, client, keys, clock, order, payment_id)
    assert state(client, keys, order["id"], payment_id) == ("pending", "failed")
    failed = client.get(f"/v1/payments/{payment_id}", headers=keys.headers("admin")).json()
    assert failed["failure"]["code"] == "payment_interrupted"
    assert charges(shop, order["id"]) == 0
    intent = shop.mock.retrieve_intent(failed["provider_payment_id"])
    assert intent.status.value == "canceled"
    with pytest.raises(ProviderError):  # the request's confirm, arriving late, charges nothing
        shop.mock.confirm_intent(intent.id, idempotency_key="late-confirm")
    paid = client.post(
        f"/v1/orders/{order['id']}/payments",
        json={"payment_method": "pm_card_visa"},
        headers=keys.headers("storefront"),
    )
    assert paid.status_code == 201 and paid.json()["status"] == "succeeded"
    assert charges(shop, order["id"]) == 1


def test_a_declined_payment_cut_off_frees_the_order(
    shop: Kassa, client: TestClient, keys: Keys, clock: FakeClock
) -> None:
    order = new_order(client, keys)
    payment_id = cut_off(
        shop, storefront(keys), order["id"], "pm_card_chargeDeclined", reach="charge"
    )
    clock.advance(shop.settings.payment_resume_after_s + 1)
    work(shop)
    assert state(client, keys, order["id"], payment_id) == ("pending", "failed")
    paid = client.post(
        f"/v1/orders/{order['id']}/payments",
        json={"payment_method": "pm_card_visa"},
        headers=keys.headers("storefront"),
    )
    assert paid.status_code == 201 and paid.json()["status"] == "succeeded"


def test_a_browser_flow_payment_cut_off_gets_its_client_secret(
    shop: Kassa, client: TestClient, keys: Keys, clock: FakeClock
) -> None:
    order = new_order(client, keys)
    payment_id = cut_off(shop, storefront(keys), order["id"], None, reach="create")
    clock.advance(shop.settings.payment_resume_after_s + 1)
    work(shop)
    p = client.get(f"/v1/payments/{payment_id}", headers=keys.headers("storefront")).json()
    assert p["status"] == "requires_action"
    assert p["client_secret"].startswith(p["provider_payment_id"])
    assert charges(shop, order["id"]) == 0


def test_an_unreachable_provider_never_fails_the_payment(
    shop: Kassa, client: TestClient, keys: Keys, clock: FakeClock, monkeypatch: Any
) -> None:
    """While the provider cannot answer, the payment stays processing and the job backs
    off; once it answers, the charge it already made is found and settled, once."""
    order = new_order(client, keys)
    payment_id = cut_off(shop, storefront(keys), order["id"], "pm_card_visa", reach="charge")
    real = shop.mock.create_intent

    def down(*args: Any, **kwargs: Any) -> Any:
        from kassa.domain.payments import ErrorType, ProviderFailure

        raise ProviderError(ProviderFailure(ErrorType.API_ERROR, "down", http_status=503))

    monkeypatch.setattr(shop.mock, "create_intent", down)
    clock.advance(shop.settings.payment_resume_after_s + 1)
    work(shop)
    assert state(client, keys, order["id"], payment_id) == ("pending", "processing")
    with shop.db.transaction(read_only=True) as s:
        job = s.scalar(select(Job).where(Job.kind == RESUME_PAYMENT))
        assert job is not None and job.state == "queued" and job.attempts == 1
    monkeypatch.setattr(shop.mock, "create_intent", real)
    clock.advance(3600)
    work(shop)
    assert state(client, keys, order["id"], payment_id) == ("paid", "succeeded")
    assert charges(shop, order["id"]) == 1


def test_a_replay_of_a_request_whose_payment_is_processing_answers_202(
    shop: Kassa, client: TestClient, keys: Keys, clock: FakeClock
) -> None:
    order = new_order(client, keys)
    path = f"/v1/orders/{order['id']}/payments"
    body = {"payment_method": "pm_card_visa"}
    raw = json.dumps(body).encode()
    decision = shop.idempotency.begin(
        keys.ids["storefront"], "pay-1", idempotency.fingerprint("POST", path, raw)
    )
    assert isinstance(decision, idempotency.Proceed)
    # the request that held the key died after the provider charged
    with shop.idempotency.running(shop.idempotency.adopt(decision.pk)):
        payment_id = cut_off(shop, storefront(keys), order["id"], "pm_card_visa", reach="charge")
    clock.advance(shop.settings.idempotency_lock_timeout_s + 1)
    replay = client.post(
        path,
        content=raw,
        headers=keys.headers(
            "storefront", **{"Idempotency-Key": "pay-1", "Content-Type": "application/json"}
        ),
    )
    assert replay.status_code == 202, replay.text
    assert replay.json()["id"] == payment_id and replay.json()["status"] == "processing"
    assert replay.headers["Idempotent-Replayed"] == "true"
    with shop.db.transaction(read_only=True) as s:
        assert s.scalar(select(func.count()).select_from(Payment)) == 1
    clock.advance(shop.settings.payment_resume_after_s)
    work(shop)
    assert state(client, keys, order["id"], payment_id) == ("paid", "succeeded")
    assert charges(shop, order["id"]) == 1
