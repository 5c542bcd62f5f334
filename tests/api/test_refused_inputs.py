"""Inputs refused with a 422 field error before anything is stored (issue 8, finding 10).

- ISO 4217 codes that are not money (`XXX` no currency, `XTS` testing, metals, XDR, bond
  units, ...) for products, orders, wallet top-ups and adjustments;
- the sandbox's `latency=<ms>` fault over 5,000 ms, refused before a payment row is opened.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from kassa.bootstrap import Kassa
from kassa.storage.tables import Payment
from tests.conftest import Keys, Sleeps

PROBLEM_JSON = "application/problem+json"


def problem(response: Any, status: int, code: str, field: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert field in [e["field"] for e in body["errors"]], body
    return body


def payments(kassa: Kassa) -> int:
    with kassa.db.transaction(read_only=True) as session:
        return int(session.scalar(select(func.count()).select_from(Payment)) or 0)


@pytest.fixture
def order_id(client: TestClient, keys: Keys) -> str:
    product = {"sku": "MUG", "title": "Mug", "unit_amount": 1200, "currency": "EUR"}
    assert client.post("/v1/products", json=product, headers=keys.headers("ops")).status_code == 201
    order = {"email": "a@example.com", "currency": "EUR", "lines": [{"sku": "MUG", "quantity": 1}]}
    response = client.post("/v1/orders", json=order, headers=keys.headers("storefront"))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.fixture
def customer_id(client: TestClient, keys: Keys) -> str:
    body = {"email": "c@example.com"}
    response = client.post("/v1/customers", json=body, headers=keys.headers("ops"))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.mark.parametrize("currency", ["XXX", "XTS", "xau", "XDR", "XBA", "XSU", "XUA"])
def test_codes_that_are_not_money_are_refused_everywhere(
    client: TestClient, keys: Keys, kassa: Kassa, customer_id: str, currency: str
) -> None:
    ops = keys.headers("ops")
    product = {"sku": "GOLD", "title": "Gold", "unit_amount": 100, "currency": currency}
    problem(
        client.post("/v1/products", json=product, headers=ops), 422, "unknown_currency", "currency"
    )
    assert client.get("/v1/products/GOLD", headers=ops).status_code == 404
    order = {"email": "a@example.com", "currency": currency, "lines": [{"sku": "X", "quantity": 1}]}
    problem(client.post("/v1/orders", json=order, headers=ops), 422, "unknown_currency", "currency")
    top_up = {"amount": 500, "currency": currency, "payment_method": "pm_card_visa"}
    wallet = f"/v1/customers/{customer_id}/wallet"
    response = client.post(wallet + "/top-ups", json=top_up, headers=ops)
    problem(response, 422, "unknown_currency", "currency")
    adjust = {"currency": currency, "balance": 10, "reason": "goodwill"}
    response = client.post(wallet + "/adjust", json=adjust, headers=keys.headers("admin"))
    problem(response, 422, "unknown_currency", "currency")
    assert payments(kassa) == 0


def test_a_currency_unions_x_code_is_money(client: TestClient, keys: Keys) -> None:
    product = {"sku": "CFA", "title": "Pagne", "unit_amount": 5000, "currency": "xof"}
    response = client.post("/v1/products", json=product, headers=keys.headers("ops"))
    assert response.status_code == 201, response.text
    assert response.json()["currency"] == "XOF"


# "5²" is digits to str.isdigit() but not to int(): it once reached int() in the mock.
LATENCY_SCRIPTS = [
    "pm_card_visa|latency=5001",
    "pm_card_visa|ok,latency=60000",
    "pm_card_visa|latency=5²",
]


@pytest.mark.parametrize("method", LATENCY_SCRIPTS)
def test_latency_over_five_seconds_is_refused_before_a_payment_opens(
    client: TestClient, keys: Keys, kassa: Kassa, order_id: str, customer_id: str, method: str
) -> None:
    sf = keys.headers("storefront")
    body = {"payment_method": method}
    response = client.post(f"/v1/orders/{order_id}/payments", json=body, headers=sf)
    detail = problem(response, 422, "validation_error", "payment_method")["detail"]
    assert "latency" in detail
    top_up = {"amount": 500, "currency": "EUR", "payment_method": method}
    response = client.post(
        f"/v1/customers/{customer_id}/wallet/top-ups", json=top_up, headers=keys.headers("ops")
    )
    problem(response, 422, "validation_error", "payment_method")
    response = client.post("/v1/providers/mock/intents/pi_nothing/confirm", json=body, headers=sf)
    problem(response, 422, "validation_error", "payment_method")
    assert payments(kassa) == 0


def test_latency_of_five_seconds_is_served(
    client: TestClient, keys: Keys, order_id: str, sleeps: Sleeps
) -> None:
    body = {"payment_method": "pm_card_visa|latency=5000"}
    response = client.post(
        f"/v1/orders/{order_id}/payments", json=body, headers=keys.headers("storefront")
    )
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "succeeded"
    assert 5.0 in sleeps.seconds
