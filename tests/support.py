"""Helpers for tests that need state the API cannot yet produce on its own."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import event, update

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


@contextmanager
def statements_sent(kassa: Kassa) -> Iterator[list[str]]:
    """The SQL of every statement kassa's engine sends inside the block, in order."""
    seen: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        seen.append(statement)

    event.listen(kassa.db.engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(kassa.db.engine, "before_cursor_execute", note)
