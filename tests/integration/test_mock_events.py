"""The mock gateway reports to kassa through signed webhooks, delivered by the worker."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from kassa.bootstrap import Kassa
from kassa.services.catalogue import NewProduct
from kassa.services.context import RequestContext
from kassa.storage.tables import Job, ProviderEvent, Refund
from kassa.worker import Worker
from tests.conftest import Keys


@pytest.fixture
def wired(kassa: Kassa, client: TestClient, system: RequestContext) -> Kassa:
    """Deliveries go over the test client to the app's own /v1/webhooks/mock."""
    kassa.catalogue.create(system, NewProduct("MUG", "Mug", 1000, "EUR", stock=None))
    kassa.mock_webhook_url = "http://testserver/v1/webhooks/mock"
    kassa.mock_events.transport = lambda url, body, headers: (
        client.post(url, content=body, headers=headers).status_code
    )
    return kassa


def order(client: TestClient, keys: Keys) -> dict[str, Any]:
    return client.post(
        "/v1/orders",
        json={
            "email": "e@example.com",
            "currency": "EUR",
            "lines": [{"sku": "MUG", "quantity": 1}],
        },
        headers=keys.headers("storefront"),
    ).json()


def events(kassa: Kassa) -> list[tuple[str, str | None]]:
    with kassa.db.transaction(read_only=True) as s:
        return [
            (e.type, e.outcome) for e in s.scalars(select(ProviderEvent).order_by(ProviderEvent.pk))
        ]


def test_browser_payment_is_finished_by_the_webhook(
    wired: Kassa, client: TestClient, keys: Keys
) -> None:
    o = order(client, keys)
    p = client.post(
        f"/v1/orders/{o['id']}/payments", json={}, headers=keys.headers("storefront")
    ).json()
    wired.mock.confirm_from_browser(p["provider_payment_id"], "pm_card_visa")  # no sync
    assert (
        client.get(f"/v1/orders/{o['id']}", headers=keys.headers("ops")).json()["status"]
        == "pending"
    )
    Worker(wired, name="w").drain()  # deliver the event, then apply it
    Worker(wired, name="w").drain()
    assert events(wired) == [("payment_intent.succeeded", "payment succeeded")]
    assert (
        client.get(f"/v1/orders/{o['id']}", headers=keys.headers("ops")).json()["status"] == "paid"
    )


def test_server_side_payments_and_disputes_report_too(
    wired: Kassa, client: TestClient, keys: Keys
) -> None:
    o = order(client, keys)
    client.post(
        f"/v1/orders/{o['id']}/payments",
        json={"payment_method": "pm_card_visa"},
        headers=keys.headers("storefront"),
    )
    charge = client.get(
        f"/v1/providers/mock/charges?order={o['id']}", headers=keys.headers("admin")
    ).json()["data"][0]
    r = client.post(
        f"/v1/providers/mock/charges/{charge['id']}/dispute", headers=keys.headers("admin")
    )
    assert r.status_code == 201
    for _ in range(3):
        Worker(wired, name="w").drain()
    assert events(wired) == [
        ("payment_intent.succeeded", "already succeeded"),  # the orchestrator settled it first
        ("charge.dispute.created", "order flagged disputed"),
    ]
    got = client.get(f"/v1/orders/{o['id']}", headers=keys.headers("ops")).json()
    assert got["disputed"] is True
    assert (
        client.post(
            "/v1/providers/mock/charges/ch_nope/dispute", headers=keys.headers("admin")
        ).status_code
        == 404
    )


def test_undeliverable_events_are_retried_not_lost(
    wired: Kassa, client: TestClient, keys: Keys
) -> None:
    wired.mock_events.transport = lambda url, body, headers: 503
    o = order(client, keys)
    client.post(
        f"/v1/orders/{o['id']}/payments",
        json={"payment_method": "pm_card_visa"},
        headers=keys.headers("storefront"),
    )
    Worker(wired, name="w").drain()
    with wired.db.transaction(read_only=True) as s:
        job = s.scalar(select(Job).where(Job.kind == "mock.deliver_event"))
        assert job is not None and job.state == "queued" and "503" in (job.last_error or "")


def refund_rows(kassa: Kassa, order_id: str) -> list[tuple[int, str, str]]:
    query = select(Refund).where(Refund.order_id == order_id).order_by(Refund.pk)
    with kassa.db.transaction(read_only=True) as s:
        return [(r.amount, r.status, r.origin) for r in s.scalars(query)]


def refunded_event(kassa: Kassa) -> dict[str, Any]:
    with kassa.db.transaction(read_only=True) as s:
        payloads = [
            e.payload
            for e in s.scalars(select(ProviderEvent).order_by(ProviderEvent.pk))
            if e.type == "charge.refunded"
        ]
    return dict(payloads[-1]["data"]["object"])


def test_a_refund_through_kassa_is_reported_and_not_recorded_twice(
    wired: Kassa, client: TestClient, keys: Keys
) -> None:
    o = order(client, keys)
    p = client.post(
        f"/v1/orders/{o['id']}/payments",
        json={"payment_method": "pm_card_visa"},
        headers=keys.headers("storefront"),
    ).json()
    r = client.post(
        f"/v1/orders/{o['id']}/refunds", json={"amount": 400}, headers=keys.headers("ops")
    )
    assert r.status_code == 201 and r.json()["status"] == "succeeded"
    for _ in range(3):
        Worker(wired, name="w").drain()
    assert events(wired) == [
        ("payment_intent.succeeded", "already succeeded"),
        ("charge.refunded", "0 refund(s) recorded"),  # kassa's own refund, already known
    ]
    obj = refunded_event(wired)
    (part,) = obj["refunds"]["data"]
    assert (obj["amount_refunded"], obj["refunded"]) == (400, False)
    assert obj["payment_intent"] == p["provider_payment_id"]
    assert part["id"] == r.json()["provider_refund_id"]
    assert (part["amount"], part["status"]) == (400, "succeeded")
    assert part["metadata"] == {"kassa_refund": r.json()["id"]}
    got = client.get(f"/v1/orders/{o['id']}", headers=keys.headers("ops")).json()
    assert (got["amount_refunded"], got["refund_status"]) == (400, "partial")
    assert refund_rows(wired, o["id"]) == [(400, "succeeded", "kassa")]


def test_a_refund_made_at_the_mock_is_recorded_from_its_event(
    wired: Kassa, client: TestClient, keys: Keys
) -> None:
    o = order(client, keys)
    p = client.post(
        f"/v1/orders/{o['id']}/payments",
        json={"payment_method": "pm_card_visa"},
        headers=keys.headers("storefront"),
    ).json()
    made = wired.mock.refund(  # as from the provider's dashboard: kassa never asked
        p["provider_payment_id"], 250, idempotency_key="dashboard-1", reference="dashboard"
    )
    for _ in range(3):
        Worker(wired, name="w").drain()
    assert events(wired)[-1] == ("charge.refunded", "1 refund(s) recorded")
    obj = refunded_event(wired)
    assert obj["payment_intent"] == p["provider_payment_id"]
    assert [x["id"] for x in obj["refunds"]["data"]] == [made.id]
    got = client.get(f"/v1/orders/{o['id']}", headers=keys.headers("ops")).json()
    assert (got["amount_refunded"], got["refund_status"]) == (250, "partial")
    assert refund_rows(wired, o["id"]) == [(250, "succeeded", "provider")]
