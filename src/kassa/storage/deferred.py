"""Rows written when their transaction commits: append-only records (the audit log) that
nothing reads back in the transaction that writes them.

A state change often writes two or three such records (a settled payment: its own and its
order's), each one execution and one round trip. Deferred, they go in at commit, one
`executemany` of the table's inline insert (`write_only_insert`; psycopg sends the rows in
one pipeline, one round trip), still inside the transaction: they commit with its other
writes or not at all. A rollback drops them. (A multi-row `INSERT ... VALUES (...), (...)`
was tried first: SQLAlchemy compiled it anew on every execution, which cost more CPU than
the round trip it saved; measured with py-spy on the order create, issue 10.)

How: `defer(session, table, row)` keeps the row in `session.info`; a `before_commit`
listener on every Session writes what its transaction kept, and the end of the outermost
transaction drops whatever is left (a rollback). A savepoint rolled back alone
(`begin_nested`) does not drop them: defer no row inside one.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from kassa.storage.database import write_only_insert

_KEY = "kassa.deferred_rows"


def defer(session: Session, model: type[Any], row: dict[str, Any]) -> None:
    """Write `row` into `model`'s table when this session's transaction commits. Every row
    of a table must have the same columns."""
    kept: dict[type[Any], list[dict[str, Any]]] = session.info.setdefault(_KEY, {})
    kept.setdefault(model, []).append(row)


def pending(session: Session) -> int:
    """How many rows wait for the commit."""
    return sum(len(rows) for rows in session.info.get(_KEY, {}).values())


@event.listens_for(Session, "before_commit")
def _write_deferred(session: Session) -> None:
    kept = session.info.pop(_KEY, None)
    if not kept:
        return
    for model, rows in kept.items():
        session.execute(write_only_insert(model), rows if len(rows) > 1 else rows[0])


@event.listens_for(Session, "after_transaction_end")
def _drop_deferred(session: Session, transaction: SessionTransaction) -> None:
    """The outermost transaction ended: committed (its rows were written and taken out
    before), rolled back or closed. What it kept goes with it."""
    if transaction.parent is None:
        session.info.pop(_KEY, None)
