"""`storage.insert_new`: a mapped object's row written with a Core insert, defaults kept."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from kassa.bootstrap import Kassa
from kassa.providers.mock.tables import MockIntent
from kassa.storage.database import insert_new


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
