"""Rows written when their transaction commits: append-only records (the audit log) that
nothing reads back in the transaction that writes them.

A state change often writes two or three such records (a settled payment: its own and its
order's), each one statement and one execution at the server. Deferred, they go in at
commit, one multi-row INSERT per table (`prebuilt.rows_insert`), still inside the
transaction: they commit with its other writes or not at all. A rollback drops them.

How: `defer(session, table, row)` keeps the row in `session.info`; a `before_commit`
listener on every Session writes what its transaction kept, and the end of the outermost
transaction drops whatever is left (a rollback). A savepoint rolled back alone
(`begin_nested`) does not drop them: defer no row inside one.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, event
from sqlalchemy.orm import Session, SessionTransaction

from kassa.storage.prebuilt import rows_insert

_KEY = "kassa.deferred_rows"
_CHUNK = 50  # rows per statement: a kept statement per row count up to this


def defer(session: Session, table: Table, row: dict[str, Any]) -> None:
    """Write `row` into `table` when this session's transaction commits. Every row of a
    table must have the same columns."""
    kept: dict[Table, list[dict[str, Any]]] = session.info.setdefault(_KEY, {})
    kept.setdefault(table, []).append(row)


def pending(session: Session) -> int:
    """How many rows wait for the commit."""
    return sum(len(rows) for rows in session.info.get(_KEY, {}).values())


@event.listens_for(Session, "before_commit")
def _write_deferred(session: Session) -> None:
    kept = session.info.pop(_KEY, None)
    if not kept:
        return
    for table, rows in kept.items():
        for start in range(0, len(rows), _CHUNK):
            session.execute(*rows_insert(table, rows[start : start + _CHUNK]))


@event.listens_for(Session, "after_transaction_end")
def _drop_deferred(session: Session, transaction: SessionTransaction) -> None:
    """The outermost transaction ended: committed (its rows were written and taken out
    before), rolled back or closed. What it kept goes with it."""
    if transaction.parent is None:
        session.info.pop(_KEY, None)
