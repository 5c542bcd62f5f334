"""Core inserts: `storage.insert_new` (a mapped object's row, defaults kept) and
`storage.prebuilt.rows_insert` (several rows in one statement)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import event, select

from kassa.bootstrap import Kassa
from kassa.providers.mock.tables import MockIntent, MockRequest
from kassa.storage.database import insert_new, table_of
from kassa.storage.prebuilt import rows_insert


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


def test_rows_insert_writes_several_rows_in_one_statement_and_keeps_it(kassa: Kassa) -> None:
    at = datetime(2026, 12, 2, tzinfo=UTC)
    rows = [
        {"reference": f"ref_{i}", "operation": "probe", "idempotency_key": key, "created_at": at}
        for i, key in enumerate(["k1", None, "k3"])
    ]
    seen: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        seen.append(statement)

    event.listen(kassa.db.engine, "before_cursor_execute", note)
    try:
        with kassa.db.transaction() as session:
            statement, params = rows_insert(table_of(MockRequest), rows)
            session.execute(statement, params)
    finally:
        event.remove(kassa.db.engine, "before_cursor_execute", note)
    assert len([s for s in seen if "INSERT INTO mock_requests" in s]) == 1
    assert rows_insert(table_of(MockRequest), rows)[0] is statement  # built once
    with kassa.db.transaction(read_only=True) as session:
        stored = session.execute(
            select(MockRequest.reference, MockRequest.idempotency_key).order_by(MockRequest.pk)
        ).all()
    assert [tuple(r) for r in stored] == [("ref_0", "k1"), ("ref_1", None), ("ref_2", "k3")]
