"""Issue 8, finding 3: a storefront key sees and uses only the customers and orders it
created. Another key's customer, order, payment or document does not exist for it (404),
and nothing is charged or changed on its behalf. Its own orders' invoice and credit
notes (JSON, HTML, PDF) are readable, so a shop can offer "download your invoice".
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from kassa.bootstrap import Kassa
from kassa.providers.mock.tables import MockCharge
from kassa.services.catalogue import NewProduct
from kassa.services.context import RequestContext
from kassa.storage.tables import Payment
from kassa.worker import Worker
from tests.builders import customer, order
from tests.conftest import Keys

A, B = "storefront", "other_storefront"


@pytest.fixture
def shop(kassa: Kassa, system: RequestContext) -> Kassa:
    kassa.catalogue.create(system, NewProduct("MUG", "Mug", 1450, "EUR", stock=None))
    return kassa


def assert_problem(r: Any, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == code


def test_another_keys_customer_cannot_be_ordered_for(
    shop: Kassa, client: TestClient, keys: Keys
) -> None:
    theirs = customer(client, keys, A)
    r = client.post(
        "/v1/orders",
        json={"customer": theirs, "currency": "EUR", "lines": [{"sku": "MUG", "quantity": 1}]},
        headers=keys.headers(B),
    )
    assert_problem(r, 404, "customer_not_found")
    # the key that created the customer, and staff, may
    assert order(client, keys, A, customer=theirs)["customer"] == theirs
    assert order(client, keys, "ops", customer=theirs)["customer"] == theirs


def test_another_keys_customer_cannot_be_topped_up(
    shop: Kassa, client: TestClient, keys: Keys
) -> None:
    theirs = customer(client, keys, A)
    top_up = {"amount": 500, "currency": "EUR", "payment_method": "pm_card_visa"}
    r = client.post(f"/v1/customers/{theirs}/wallet/top-ups", json=top_up, headers=keys.headers(B))
    assert_problem(r, 404, "customer_not_found")
    with shop.db.transaction(read_only=True) as s:
        assert s.scalar(select(func.count()).select_from(Payment)) == 0
    ok = client.post(f"/v1/customers/{theirs}/wallet/top-ups", json=top_up, headers=keys.headers(A))
    assert ok.status_code == 201 and ok.json()["status"] == "succeeded"


def test_another_keys_intent_cannot_be_confirmed_at_the_sandbox(
    shop: Kassa, client: TestClient, keys: Keys
) -> None:
    mine = order(client, keys, A)
    p = client.post(f"/v1/orders/{mine['id']}/payments", json={}, headers=keys.headers(A)).json()
    assert p["status"] == "requires_action"
    r = client.post(
        f"/v1/providers/mock/intents/{p['provider_payment_id']}/confirm",
        json={"payment_method": "pm_card_visa"},
        headers=keys.headers(B),
    )
    assert_problem(r, 404, "payment_not_found")
    assert "client_secret" not in r.text and p["id"] not in r.text
    with shop.db.transaction(read_only=True) as s:  # nothing was charged on B's word
        assert s.scalar(select(func.count()).select_from(MockCharge)) == 0
    assert_problem(
        client.get(f"/v1/payments/{p['id']}", headers=keys.headers(B)), 404, "payment_not_found"
    )
    mine_now = client.get(f"/v1/orders/{mine['id']}", headers=keys.headers(A)).json()
    assert mine_now["status"] == "pending"
    ok = client.post(
        f"/v1/providers/mock/intents/{p['provider_payment_id']}/confirm",
        json={"payment_method": "pm_card_visa"},
        headers=keys.headers(A),
    )
    assert ok.status_code == 200 and ok.json()["status"] == "succeeded"


def test_a_storefront_reads_its_own_orders_documents_and_no_others(
    shop: Kassa, client: TestClient, keys: Keys
) -> None:
    mine = order(client, keys, A)
    paid = client.post(
        f"/v1/orders/{mine['id']}/payments",
        json={"payment_method": "pm_card_visa"},
        headers=keys.headers(A),
    )
    assert paid.json()["status"] == "succeeded"
    refund = client.post(
        f"/v1/orders/{mine['id']}/refunds", json={"amount": 450}, headers=keys.headers("ops")
    )
    assert refund.status_code == 201, refund.text
    Worker(shop, name="t").drain()

    invoice = client.get(f"/v1/orders/{mine['id']}/invoice", headers=keys.headers(A))
    assert invoice.status_code == 200, invoice.text
    inv = invoice.json()
    notes = client.get(f"/v1/orders/{mine['id']}/credit-notes", headers=keys.headers(A)).json()
    assert len(notes["data"]) == 1
    cn = notes["data"][0]
    for path, media in [
        (f"/v1/invoices/{inv['id']}", "application/json"),
        (f"/v1/invoices/{inv['id']}.html", "text/html"),
        (f"/v1/invoices/{inv['id']}.pdf", "application/pdf"),
        (f"/v1/credit-notes/{cn['id']}", "application/json"),
        (f"/v1/credit-notes/{cn['id']}.pdf", "application/pdf"),
    ]:
        r = client.get(path, headers=keys.headers(A))
        assert r.status_code == 200, (path, r.text)
        assert r.headers["content-type"].startswith(media)
        assert client.get(path, headers=keys.headers(B)).status_code == 404, path
    assert_problem(
        client.get(f"/v1/orders/{mine['id']}/invoice", headers=keys.headers(B)),
        404,
        "order_not_found",
    )
    assert_problem(
        client.get(f"/v1/orders/{mine['id']}/credit-notes", headers=keys.headers(B)),
        404,
        "order_not_found",
    )
    # the lists of every document stay staff-only
    for path in ("/v1/invoices", "/v1/credit-notes"):
        assert_problem(client.get(path, headers=keys.headers(A)), 403, "insufficient_role")
