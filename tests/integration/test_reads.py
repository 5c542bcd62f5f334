"""Read-only transactions: on PostgreSQL no BEGIN/COMMIT round trips; on SQLite one
snapshot for the whole read."""

from __future__ import annotations

import psycopg
from sqlalchemy import text

from kassa.bootstrap import Kassa


def test_a_postgresql_read_opens_no_transaction_and_a_write_still_does(kassa: Kassa) -> None:
    db = kassa.db
    with db.transaction(read_only=True) as session:
        session.execute(text("SELECT 1"))
        raw = session.connection().connection.driver_connection
        if db.is_sqlite:
            assert raw.in_transaction  # the deferred BEGIN holds one snapshot
        else:
            assert isinstance(raw, psycopg.Connection)
            assert raw.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with db.transaction() as session:
        session.execute(text("SELECT 1"))
        raw = session.connection().connection.driver_connection
        if db.is_sqlite:
            assert raw.in_transaction
        else:
            assert raw.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
