"""kassa's own events (issue 12): each change the contract lists writes one event, in the
transaction of the change, carrying the resource exactly as the API returns it then.

Every change is driven the way it happens for real (the API, the sandbox gateway, signed
provider webhooks applied by the worker, the reconciliation run); the event's
`data.object` is compared with the API's own JSON for the same resource, read right after.
On SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from kassa.bootstrap import Kassa
from kassa.providers.mock.tables import MockCharge
from kassa.services import events
from kassa.services.context import RequestContext
from kassa.storage.tables import Event
from kassa.worker import Worker
from tests import builders
from tests.conftest import FakeClock, Keys
from tests.events import dispute, event, intent, signed
from tests.support import statements_sent

CARD = builders.CARD


# -- helpers ------------------------------------------------------------------------------


def all_events(kassa: Kassa) -> list[tuple[str, dict[str, Any]]]:
    """(type, data.object) of every event, oldest first, read from the table itself."""
    with kassa.db.transaction(read_only=True) as s:
        return [
            (row.type, row.data["object"]) for row in s.scalars(select(Event).order_by(Event.pk))
        ]


def about(kassa: Kassa, event_type: str, object_id: str) -> list[dict[str, Any]]:
    """The resources of every `event_type` event about the object `object_id`."""
    return [
        obj
        for kind, obj in all_events(kassa)
        if kind == event_type and (obj.get("id") or obj.get("customer")) == object_id
    ]


def the_one(kassa: Kassa, event_type: str, object_id: str) -> dict[str, Any]:
    found = about(kassa, event_type, object_id)
    assert len(found) == 1, f"{len(found)} {event_type} events about {object_id}"
    return found[0]


def get(client: TestClient, keys: Keys, path: str) -> dict[str, Any]:
    r = client.get(path, headers=keys.headers("admin"))
    assert r.status_code == 200, r.text
    return dict(r.json())


def post(
    client: TestClient, keys: Keys, path: str, body: Any = None, role: str = "ops"
) -> dict[str, Any]:
    r = client.post(path, json=body, headers=keys.headers(role))
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


def deliver(client: TestClient, clock: FakeClock, body: bytes) -> None:
    """A provider webhook, signed like the sandbox signs, received (not yet applied)."""
    headers = signed(body, int(clock.now.timestamp()))
    r = client.post("/v1/webhooks/mock", content=body, headers=headers)
    assert r.status_code == 200, r.text


def browser_payment(client: TestClient, keys: Keys) -> dict[str, Any]:
    """A payment waiting for the shopper (no card given): `requires_action`."""
    placed = builders.order(client, keys)
    return post(client, keys, f"/v1/orders/{placed['id']}/payments", {}, role="storefront")


@pytest.fixture
def shop(kassa: Kassa, client: TestClient, keys: Keys) -> Kassa:
    builders.make_product(client, keys)  # MUG, 10.00 EUR, unlimited
    builders.make_product(client, keys, "VASE", unit_amount=5000, unique=True)
    return kassa


# -- orders and payments, the request path ------------------------------------------------


def test_creating_and_paying_an_order_reports_each_once_as_the_api_shows_it(
    shop: Kassa, client: TestClient, keys: Keys
) -> None:
    placed = builders.order(client, keys, lines=(("MUG", 2), ("VASE", 1)))
    assert the_one(shop, events.ORDER_CREATED, placed["id"]) == placed
    assert placed == get(client, keys, f"/v1/orders/{placed['id']}")

    paid = builders.pay(client, keys, placed["id"])
    assert paid["status"] == "succeeded"
    assert the_one(shop, events.PAYMENT_SUCCEEDED, paid["id"]) == paid
    assert paid == get(client, keys, f"/v1/payments/{paid['id']}")
    order = get(client, keys, f"/v1/orders/{placed['id']}")
    assert order["status"] == "paid" and order["reservation_expires_at"] is None
    assert the_one(shop, events.ORDER_PAID, placed["id"]) == order
    # the payment's event comes first, each written once; the invoice, issued in the
    # same transaction, after the order it bills
    assert [kind for kind, _ in all_events(shop)] == [
        events.ORDER_CREATED,
        events.PAYMENT_SUCCEEDED,
        events.ORDER_PAID,
        events.INVOICE_ISSUED,
    ]


def test_a_replayed_request_writes_no_second_event(
    shop: Kassa, client: TestClient, keys: Keys
) -> None:
    body = {"email": "i@example.com", "currency": "EUR", "lines": [{"sku": "MUG", "quantity": 1}]}
    headers = keys.headers("storefront", **{"Idempotency-Key": "order-once"})
    first = client.post("/v1/orders", json=body, headers=headers)
    again = client.post("/v1/orders", json=body, headers=headers)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["id"] == first.json()["id"]
    pay_headers = keys.headers("storefront", **{"Idempotency-Key": "pay-once"})
    path = f"/v1/orders/{first.json()['id']}/payments"
    for _ in range(2):
        assert client.post(path, json={"payment_method": CARD}, headers=pay_headers).is_success
    assert [kind for kind, _ in all_events(shop)] == [
        events.ORDER_CREATED,
        events.PAYMENT_SUCCEEDED,
        events.ORDER_PAID,
        events.INVOICE_ISSUED,
    ]


def test_a_declined_card_and_a_challenge_are_reported(
    shop: Kassa, client: TestClient, keys: Keys
) -> None:
    placed = builders.order(client, keys)
    declined = post(
        client,
        keys,
        f"/v1/orders/{placed['id']}/payments",
        {"payment_method": "pm_card_chargeDeclined"},
        role="storefront",
    )
    assert declined["status"] == "failed"
    assert the_one(shop, events.PAYMENT_FAILED, declined["id"]) == declined
    assert declined == get(client, keys, f"/v1/payments/{declined['id']}")

    waiting = browser_payment(client, keys)
    assert waiting["status"] == "requires_action"
    assert the_one(shop, events.PAYMENT_REQUIRES_ACTION, waiting["id"]) == waiting
    assert about(shop, events.ORDER_PAID, placed["id"]) == []


def test_cancel_fulfil_and_an_expired_hold_are_reported(
    shop: Kassa, client: TestClient, keys: Keys, clock: FakeClock, system: RequestContext
) -> None:
    canceled = builders.order(client, keys)
    answer = post(client, keys, f"/v1/orders/{canceled['id']}/cancel")
    assert answer["status"] == "canceled"
    assert the_one(shop, events.ORDER_CANCELED, canceled["id"]) == answer
    assert answer == get(client, keys, f"/v1/orders/{canceled['id']}")

    shipped = builders.paid_order(client, keys)
    answer = post(client, keys, f"/v1/orders/{shipped['id']}/fulfill")
    assert answer["status"] == "fulfilled"
    assert the_one(shop, events.ORDER_FULFILLED, shipped["id"]) == answer

    held = builders.order(client, keys, lines=(("VASE", 1),))
    clock.advance(shop.settings.reservation_ttl_s + 1)
    assert shop.orders.release_expired_reservations(system) == 1
    expired = get(client, keys, f"/v1/orders/{held['id']}")
    assert expired["cancel_reason"] == "reservation_expired"
    assert the_one(shop, events.ORDER_CANCELED, held["id"]) == expired


def test_a_change_rolled_back_after_its_event_leaves_no_event(
    shop: Kassa,
    client: TestClient,
    keys: Keys,
    system: RequestContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    placed = builders.order(client, keys)

    def broken(*_: object) -> None:  # fails after payment.succeeded and order.paid
        raise RuntimeError("the database went away mid-settlement")

    monkeypatch.setattr(shop.invoices, "invoice_paid_order", broken)
    with pytest.raises(RuntimeError):
        shop.payments.pay(system, placed["id"], payment_method=CARD)
    assert [kind for kind, _ in all_events(shop)] == [events.ORDER_CREATED]
    assert get(client, keys, f"/v1/orders/{placed['id']}")["status"] == "pending"


# -- provider webhooks, applied by the worker ---------------------------------------------


def test_duplicate_and_replayed_provider_webhooks_report_the_payment_once(
    shop: Kassa, client: TestClient, keys: Keys, clock: FakeClock
) -> None:
    waiting = browser_payment(client, keys)
    succeeded = event(
        "evt_ok_1",
        "payment_intent.succeeded",
        intent(waiting["provider_payment_id"], waiting["id"], 1000),
    )
    for _ in range(20):  # the same delivery, again and again
        deliver(client, clock, succeeded)
    Worker(shop, name="w").drain()
    # the same news under another event id, as a provider may send it
    deliver(
        client,
        clock,
        event(
            "evt_ok_2",
            "payment_intent.succeeded",
            intent(waiting["provider_payment_id"], waiting["id"], 1000),
        ),
    )
    Worker(shop, name="w").drain()

    payment = get(client, keys, f"/v1/payments/{waiting['id']}")
    assert payment["status"] == "succeeded"
    assert the_one(shop, events.PAYMENT_SUCCEEDED, waiting["id"]) == payment
    order = get(client, keys, f"/v1/orders/{waiting['order']}")
    assert the_one(shop, events.ORDER_PAID, waiting["order"]) == order


def test_a_dispute_is_reported_once_with_the_order_it_flags(
    shop: Kassa, client: TestClient, keys: Keys, clock: FakeClock
) -> None:
    placed = builders.order(client, keys)
    paid = builders.pay(client, keys, placed["id"])
    body = event(
        "evt_dp_1", "charge.dispute.created", dispute(paid["provider_payment_id"], paid["id"], 1000)
    )
    deliver(client, clock, body)
    deliver(client, clock, body)
    Worker(shop, name="w").drain()
    order = get(client, keys, f"/v1/orders/{placed['id']}")
    assert order["disputed"] is True
    assert the_one(shop, events.DISPUTE_CREATED, placed["id"]) == order


# -- refunds, documents, wallets, findings ------------------------------------------------


def test_refunds_and_their_documents_are_reported(
    shop: Kassa, client: TestClient, keys: Keys
) -> None:
    placed = builders.paid_order(client, keys, lines=(("MUG", 3),))  # and invoiced
    invoice = get(client, keys, f"/v1/orders/{placed['id']}/invoice")
    assert the_one(shop, events.INVOICE_ISSUED, invoice["id"]) == invoice

    refund = post(client, keys, f"/v1/orders/{placed['id']}/refunds", {"amount": 500})
    assert refund["status"] == "succeeded"
    assert the_one(shop, events.REFUND_SUCCEEDED, refund["id"]) == refund
    assert refund == get(client, keys, f"/v1/refunds/{refund['id']}")
    Worker(shop, name="w").drain()  # the credit note
    (note,) = get(client, keys, f"/v1/orders/{placed['id']}/credit-notes")["data"]
    assert note == get(client, keys, f"/v1/credit-notes/{note['id']}")
    assert the_one(shop, events.CREDIT_NOTE_ISSUED, note["id"]) == note
    Worker(shop, name="w").drain()  # nothing is issued or reported twice
    assert len(about(shop, events.INVOICE_ISSUED, invoice["id"])) == 1

    with shop.db.transaction() as s:  # the sandbox refuses what is no longer there
        charge = s.scalars(select(MockCharge)).one()
        charge.amount_refunded = charge.amount
    refused = post(client, keys, f"/v1/orders/{placed['id']}/refunds", {"amount": 100})
    assert refused["status"] == "failed"
    assert the_one(shop, events.REFUND_FAILED, refused["id"]) == refused
    assert about(shop, events.REFUND_SUCCEEDED, refused["id"]) == []


def test_a_refund_to_the_wallet_and_an_adjustment_are_reported(
    shop: Kassa, client: TestClient, keys: Keys
) -> None:
    buyer = builders.customer(client, keys)
    placed = builders.paid_order(client, keys, customer=buyer)
    refund = post(
        client,
        keys,
        f"/v1/orders/{placed['id']}/refunds",
        {"amount": 400, "destination": "wallet"},
    )
    assert the_one(shop, events.REFUND_SUCCEEDED, refund["id"]) == refund

    path = f"/v1/customers/{buyer}/wallet"
    adjust = {"currency": "EUR", "balance": 1500, "reason": "goodwill"}
    post(client, keys, path + "/adjust", adjust, role="admin")
    wallet = get(client, keys, path)
    assert wallet["balances"] == {"EUR": 1500}
    assert the_one(shop, events.WALLET_ADJUSTED, buyer) == wallet
    post(client, keys, path + "/adjust", adjust, role="admin")  # the balance it has: no change
    assert len(about(shop, events.WALLET_ADJUSTED, buyer)) == 1


def test_a_check_finding_is_reported_when_it_opens_not_when_seen_again(
    shop: Kassa, client: TestClient, keys: Keys, clock: FakeClock
) -> None:
    placed = builders.paid_order(client, keys)
    Worker(shop, name="w").drain()
    with shop.db.transaction() as s:  # behind kassa's back: the order disagrees with its payment
        s.execute(
            text("UPDATE orders SET amount_paid = amount_paid + 1 WHERE id = :id"),
            {"id": placed["id"]},
        )
    post(client, keys, "/v1/checks/run")
    clock.advance(60)
    post(client, keys, "/v1/checks/run")
    (finding,) = get(client, keys, "/v1/checks/findings?status=open")["data"]
    assert finding["subject"] == placed["id"]
    opened = the_one(shop, events.CHECK_FINDING_OPENED, finding["id"])
    # as it was when opened: seen again since, so only last_seen_at has moved
    assert opened == {**finding, "last_seen_at": opened["first_seen_at"]}
    assert opened["last_seen_at"] != finding["last_seen_at"]


# -- what it costs the hot paths ----------------------------------------------------------

# Statements an order create and a card payment send (the API's, the sandbox's included).
# Before issue 12 an order create sent one statement less on SQLite and PostgreSQL alike
# (then the events' executemany at commit came in). On PostgreSQL a commit's deferred
# writes (the order and its lines, events, audit records, jobs, a stored answer) have
# since become one statement (`storage.deferred`, issue 10): 5 and 23 before, 2 and 17.
# A payment that pays its order then issued its invoice in the same transaction, where a
# job had asked for it: one statement more (the invoice counter's increment; the
# document joins the deferred writes), and the invoice job's transaction gone. The
# payment's resume guard is since dropped by the commit's statement (PostgreSQL: one
# statement fewer; SQLite runs it at commit, as before). So does the sandbox's change of
# its intent on a confirm (with the charge and its delivery job).
SENT = {"sqlite": (6, 30), "postgresql": (2, 16)}


def test_create_and_pay_write_their_events_with_one_statement_at_commit(
    shop: Kassa, client: TestClient, keys: Keys, database_url: str
) -> None:
    builders.paid_order(client, keys)  # warm: keys cached, statements compiled
    with statements_sent(shop) as created:
        placed = builders.order(client, keys)
    with statements_sent(shop) as paid:
        builders.pay(client, keys, placed["id"])
    postgres = "postgres" in database_url
    assert (len(created), len(paid)) == SENT["postgresql" if postgres else "sqlite"], (
        created,
        paid,
    )
    for sent in (created, paid):
        writing_events = [s for s in sent if "INSERT INTO events" in s]
        assert len(writing_events) == 1
        if postgres:  # with the transaction's audit record
            (merged,) = writing_events
            assert "INSERT INTO audit_log" in merged
