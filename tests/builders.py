"""Builders for the state tests start from, made the way a client makes it: through the
API. One home for what used to be copied between test files (`make_product`, `customer`,
`order`/`new_order`, `pay`, `paid_order`); each asserts its request worked, so a test
fails where its set-up fails. Defaults: the storefront role, euros, one MUG."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from fastapi.testclient import TestClient

from kassa.bootstrap import Kassa
from tests.conftest import Keys

Lines = Sequence[tuple[str, int]]
ONE_MUG: Lines = (("MUG", 1),)
CARD = "pm_card_visa"


def make_product(
    client: TestClient,
    keys: Keys,
    sku: str = "MUG",
    *,
    title: str | None = None,
    unit_amount: int = 1000,
    currency: str = "EUR",
    **extra: Any,
) -> dict[str, Any]:
    """A product (created by ops); `extra` goes into the body (`unique=True`, `stock=3`)."""
    body = {"sku": sku, "title": title or sku, "unit_amount": unit_amount, "currency": currency}
    response = client.post("/v1/products", json={**body, **extra}, headers=keys.headers("ops"))
    assert response.status_code == 201, response.text
    return dict(response.json())


def customer(
    client: TestClient, keys: Keys, role: str = "storefront", email: str = "a@example.com"
) -> str:
    """A customer's id."""
    r = client.post("/v1/customers", json={"email": email}, headers=keys.headers(role))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def order(
    client: TestClient,
    keys: Keys,
    role: str = "storefront",
    *,
    lines: Lines = ONE_MUG,
    currency: str = "EUR",
    email: str = "a@example.com",
    **buyer: Any,
) -> dict[str, Any]:
    """A pending order; the buyer is `buyer` (`customer=...`, `email=...`) or a guest
    with `email`."""
    r = client.post(
        "/v1/orders",
        json={
            **(buyer or {"email": email}),
            "currency": currency,
            "lines": [{"sku": sku, "quantity": qty} for sku, qty in lines],
        },
        headers=keys.headers(role),
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def pay(
    client: TestClient, keys: Keys, order_id: str, role: str = "storefront", **body: Any
) -> dict[str, Any]:
    """A payment the API accepted (201); `body` defaults to the sandbox's good card."""
    r = client.post(
        f"/v1/orders/{order_id}/payments",
        json=body or {"payment_method": CARD},
        headers=keys.headers(role),
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def paid_order(
    client: TestClient,
    keys: Keys,
    role: str = "storefront",
    *,
    lines: Lines = ONE_MUG,
    email: str = "a@example.com",
    payment: dict[str, Any] | None = None,
    **buyer: Any,
) -> dict[str, Any]:
    """An order paid in full (the payment `succeeded`), as it was before the payment."""
    placed = order(client, keys, role, lines=lines, email=email, **buyer)
    paid = pay(client, keys, placed["id"], role, **(payment or {}))
    assert paid["status"] == "succeeded", paid
    return placed


@contextmanager
def invoices_withheld(kassa: Kassa) -> Iterator[None]:
    """Orders paid meanwhile get no invoice, as an order paid by an earlier version of
    kassa waited for its `documents.issue_invoice` job (since issue 10 the invoice is
    issued in the paying transaction): what the check for missing documents looks for."""
    issue = kassa.invoices.invoice_paid_order
    kassa.invoices.invoice_paid_order = lambda *_: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        kassa.invoices.invoice_paid_order = issue  # type: ignore[method-assign]
