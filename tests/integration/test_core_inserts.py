"""`storage.insert_new`: a mapped object's row written with a Core insert, defaults kept."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from kassa.bootstrap import Kassa
from kassa.providers.mock.tables import MockIntent
from kassa.storage.database import insert_new
from kassa.storage.tables import Order
from tests.builders import make_product, order
from tests.conftest import Keys


def test_what_the_object_leaves_unset_takes_its_column_default(kassa: Kassa) -> None:
    intent = MockIntent(
        id="pi_core_1",
        reference="pay_core_1",
        amount=1450,
        currency="EUR",
        status="requires_confirmation",
        payment_method="pm_card_visa",
        client_secret="pi_core_1_secret",
        created_at=datetime(2026, 12, 2, tzinfo=UTC),
    )  # no metadata, no `scripted`: their defaults ({} and false) apply
    with kassa.db.transaction() as session:
        insert_new(session, intent)
        assert intent not in session  # written, not tracked
    with kassa.db.transaction(read_only=True) as session:
        row = session.execute(
            select(MockIntent.amount, MockIntent.metadata_, MockIntent.scripted).where(
                MockIntent.id == "pi_core_1"
            )
        ).one()
    assert tuple(row) == (1450, {}, False)


def test_an_order_s_number_is_drawn_once_with_its_products_whatever_its_lines(
    client: TestClient, keys: Keys, kassa: Kassa
) -> None:
    """The order's key is drawn in its products' read (`storage.next_pk`): one value per
    order, not per product row, so orders of several lines still number 1, 2, 3; an
    order refused for a missing product leaves at most a gap, never a duplicate."""
    for sku in ("A", "B", "C"):
        make_product(client, keys, sku)
    three_lines = [("A", 1), ("B", 2), ("C", 1)]
    numbers = [order(client, keys, lines=three_lines)["number"] for _ in range(2)]
    refused = client.post(
        "/v1/orders",
        json={
            "email": "a@example.com",
            "currency": "EUR",
            "lines": [{"sku": "A", "quantity": 1}, {"sku": "NOPE", "quantity": 1}],
        },
        headers=keys.headers("storefront"),
    )
    assert refused.status_code == 422
    numbers.append(order(client, keys, lines=three_lines)["number"])
    assert numbers[:2] == ["K-000001", "K-000002"]
    assert numbers[2] in {"K-000003", "K-000004"}  # a gap is allowed after a refusal
    with kassa.db.transaction(read_only=True) as session:
        assert session.scalar(select(func.count()).select_from(Order)) == 3
