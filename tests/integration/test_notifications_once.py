"""Issue 12's promise end to end, on both databases: whatever a provider repeats, the shop
hears of a payment once per endpoint and the buyer gets one confirmation.

The flow is the real one: an order paid in the browser, the provider's `succeeded` news
arriving 200 times (100 copies of one event, 100 more events under ids of their own), the
worker applying them, the dispatcher handing the events on, the webhook sender posting to a
real local receiver and the mail sender talking to a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from kassa.bootstrap import Kassa
from kassa.config import Settings
from kassa.services.context import RequestContext
from kassa.storage.tables import Email
from kassa.worker import Worker
from tests import builders
from tests.conftest import FakeClock, Keys
from tests.events import event, intent, signed
from tests.smtp_server import Recorder, smtp_server
from tests.webhook_receiver import Receiver, serve_receiver

ADMIN = RequestContext.system("test")


@pytest.fixture
def smtp() -> Iterator[tuple[Recorder, int]]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def settings(database_url: str, smtp: tuple[Recorder, int]) -> Settings:
    return Settings(
        database_url=database_url,
        webhooks_allow_private_targets=True,
        smtp_url=f"smtp://127.0.0.1:{smtp[1]}",
        mail_from="shop@kassa.test",
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from serve_receiver()


def provider_says(client: TestClient, clock: FakeClock, body: bytes) -> None:
    r = client.post(
        "/v1/webhooks/mock", content=body, headers=signed(body, int(clock.now.timestamp()))
    )
    assert r.status_code == 200, r.text


def test_200_duplicate_provider_events_make_one_order_paid_per_endpoint_and_one_e_mail(
    kassa: Kassa,
    client: TestClient,
    keys: Keys,
    clock: FakeClock,
    receiver: Receiver,
    smtp: tuple[Recorder, int],
) -> None:
    builders.make_product(client, keys)
    endpoints = {
        path: kassa.webhook_endpoints.create(ADMIN, receiver.url + path, subscribed)
        for path, subscribed in (
            ("/paid", ["order.paid"]),
            ("/all", ["*"]),
            ("/refunds", ["refund.succeeded"]),  # hears nothing of a payment
        )
    }
    placed = builders.order(client, keys)
    waiting = client.post(
        f"/v1/orders/{placed['id']}/payments", json={}, headers=keys.headers("storefront")
    ).json()
    assert waiting["status"] == "requires_action"
    news = intent(waiting["provider_payment_id"], waiting["id"], placed["total"])
    same = event("evt_paid_1", "payment_intent.succeeded", news)
    for n in range(200):  # one event 100 times, and 100 more ids saying the same
        body = (
            same if n % 2 == 0 else event(f"evt_paid_again_{n}", "payment_intent.succeeded", news)
        )
        provider_says(client, clock, body)

    Worker(kassa, name="w").drain()  # applies them all
    kassa.webhook_sender.drain()
    while kassa.emails.send_one("test-sender"):
        pass

    for path in ("/paid", "/all"):
        got = receiver.at(path)
        paid = [r for r in got if json.loads(r.body)["type"] == "order.paid"]
        assert len(paid) == 1, (path, len(paid))
        body = paid[0].verify(endpoints[path].secret or "")
        assert body["data"]["object"]["id"] == placed["id"]
        assert body["data"]["object"]["status"] == "paid"
        assert max(Counter(r.id for r in got).values()) == 1  # no event twice
    assert (
        Counter(json.loads(r.body)["type"] for r in receiver.at("/all"))["payment.succeeded"] == 1
    )
    assert receiver.at("/refunds") == []

    server, _ = smtp
    subjects = [got.message["Subject"] for got in server.received]
    confirmations = [s for s in subjects if "Invoice" not in s]
    assert len(confirmations) == 1 and placed["number"] in confirmations[0]
    assert len(subjects) == len(set(subjects)) == 2  # the confirmation and the invoice
    with kassa.db.transaction(read_only=True) as session:
        kinds = Counter(session.scalars(select(Email.kind)))
    assert kinds == {"order_confirmation": 1, "invoice": 1}
