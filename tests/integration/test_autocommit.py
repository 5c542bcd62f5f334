"""`Database.autocommit()`: one-statement writes without BEGIN/COMMIT on PostgreSQL, a
plain write transaction on SQLite and inside a request scope."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from kassa.bootstrap import Kassa
from kassa.providers.mock.tables import MockRequest
from kassa.storage.database import RequestScope

_ROW = {"reference": "ref_autocommit", "operation": "probe", "created_at": None}


def _log_call(session: Session) -> None:
    session.execute(insert(MockRequest), {**_ROW, "created_at": datetime.now(UTC)})


def _logged(kassa: Kassa) -> int:
    with kassa.db.engine.connect() as other:  # not the scope's: a connection of its own
        return int(
            other.scalar(
                select(func.count())
                .select_from(MockRequest)
                .where(MockRequest.reference == _ROW["reference"])
            )
            or 0
        )


def test_each_statement_commits_by_itself_on_postgresql_only(kassa: Kassa) -> None:
    db = kassa.db
    with db.autocommit() as session:
        _log_call(session)
        raw = session.connection().connection.driver_connection
        if db.is_sqlite:
            assert raw.in_transaction  # BEGIN IMMEDIATE, as every SQLite write
        else:
            assert isinstance(raw, psycopg.Connection)
            assert raw.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            assert _logged(kassa) == 1  # visible to others before the block ends
    assert _logged(kassa) == 1


def test_a_failing_block_keeps_what_committed_on_postgresql_and_nothing_on_sqlite(
    kassa: Kassa,
) -> None:
    def log_then_fail() -> None:
        with kassa.db.autocommit() as session:
            _log_call(session)
            raise RuntimeError("after the statement")

    with pytest.raises(RuntimeError):
        log_then_fail()
    # The documented difference: no atomicity across statements in autocommit.
    assert _logged(kassa) == (0 if kassa.db.is_sqlite else 1)


def test_inside_a_request_scope_it_joins_the_scope_s_transaction(kassa: Kassa) -> None:
    db = kassa.db
    opened: list[Session] = []
    scope = RequestScope(on_open=opened.append, hold_all=True)
    with db.scoped(scope):
        with db.autocommit() as session:
            _log_call(session)
        assert opened == [session]  # the scope's claim ran first, in the same transaction
        assert scope.session is session  # held, not committed
        if not db.is_sqlite:
            assert _logged(kassa) == 0
    assert _logged(kassa) == 0  # the scope ended without finishing: rolled back
