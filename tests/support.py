"""Helpers for tests that need state the API cannot yet produce on its own."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update

from kassa.bootstrap import Kassa
from kassa.storage.tables import Order


def force_paid(kassa: Kassa, order_id: str, at: datetime) -> None:
    """Mark an order paid directly in the database (stands in for a payment)."""
    with kassa.db.transaction() as session:
        session.execute(
            update(Order)
            .where(Order.id == order_id)
            .values(status="paid", amount_paid=Order.total, paid_at=at)
        )
