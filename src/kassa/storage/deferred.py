"""Writes made when their transaction commits: rows nothing reads back in the transaction
that writes them (an audit record, an event, a job), and the last update of a row the
transaction already holds (a request's stored answer).

A state change often writes four to six such things (a settled payment: two audit
records, two events, its invoice's job and the request's answer), each one execution and
one round trip. Deferred, they go in at commit, still inside the transaction: they commit
with its other writes or not at all, and a rollback drops them.

On PostgreSQL all of a commit's writes are ONE statement: each is a data-modifying CTE
(`WITH d0 AS (INSERT INTO audit_log ...), d1 AS (INSERT INTO events ...), s0 AS (UPDATE
idempotency_keys ...) SELECT 1`). PostgreSQL runs every one of them
exactly once, to completion, with the statement; they touch different rows, so their
order within it does not matter. The statement is built once per shape (which tables,
how many rows each, which updates) and kept (`storage.prebuilt`): building a compound
statement and its cache key on every commit cost more CPU than the round trips it saves
(a multi-row INSERT built anew each time was tried first and measured, issue 10), and a
table's several rows go in as `INSERT ... SELECT ... UNION ALL SELECT ...`, which SQLAlchemy
can cache, where it compiles a multi-row VALUES anew each time (measured, PostgreSQL, client
CPU: a commit of two audit records, an event and a job took 1.30 ms as three statements,
2.19 ms as one with a multi-row VALUES, 0.67 ms as one kept and cached). A commit
with more than `_MAX_ROWS_MERGED` rows for a table writes each table by an `executemany`
of its own instead, so the kept shapes stay few; so does SQLite, which has no
data-modifying CTEs, and its updates run one by one after the rows. Either way, tables
go in in the order their first row was deferred (a new order before its lines: on
SQLite a foreign key is checked as each statement runs; on PostgreSQL at the end of the
one statement).

How: `defer(session, model, row)` and `defer_update(session, statement, params)` keep the
write in `session.info`; a `before_commit` listener on every Session runs what its
transaction kept, and the end of the outermost transaction drops whatever is left (a
rollback). A savepoint rolled back alone (`begin_nested`) does not drop them: defer
nothing inside one. A statement that must see a table's deferred rows (a delete of a job
by its key) calls `write_now(session, model)` first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, event, insert, literal_column, select, union_all
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.sql.dml import UpdateBase

from kassa.storage.database import columns_set, table_of, write_only_insert
from kassa.storage.prebuilt import kept

_KEY = "kassa.deferred_writes"
# A commit with more rows than this for one table writes each table by an executemany of
# its own: the combined statement is kept per row count, and a bulk write (a batch of 120
# audit records) should not add a shape of its own, nor a statement with a thousand
# parameters.
_MAX_ROWS_MERGED = 8


@dataclass
class _Kept:
    """One transaction's deferred writes, in the order they were made."""

    rows: dict[type[Any], list[dict[str, Any]]] = field(default_factory=dict)
    updates: dict[UpdateBase, dict[str, Any]] = field(default_factory=dict)

    def count(self) -> int:
        return sum(len(rows) for rows in self.rows.values()) + len(self.updates)


def _kept(session: Session) -> _Kept:
    found: _Kept | None = session.info.get(_KEY)
    if found is None:
        found = session.info[_KEY] = _Kept()
    return found


def defer(session: Session, model: type[Any], row: dict[str, Any]) -> None:
    """Write `row` into `model`'s table when this session's transaction commits. The rows
    of a table should name the same columns (rows that do not go in by an executemany of
    their own, which must then be able to take them)."""
    _kept(session).rows.setdefault(model, []).append(row)


def defer_new(session: Session, row: object) -> None:
    """`database.insert_new` at commit: a new mapped object's row, for an object nothing
    in the transaction reads back from the database (the caller keeps the object)."""
    defer(session, type(row), columns_set(row))


def defer_update(session: Session, statement: UpdateBase, params: dict[str, Any]) -> None:
    """Run `statement` (an UPDATE or DELETE built once, with bind parameters of names no
    table's column has) with `params` when this session's transaction commits. A second one of
    the same statement in the transaction runs the first at once, so they keep their
    order. Two different deferred updates must not touch the same row: on PostgreSQL
    they run in one statement, on one snapshot, and only one would take effect."""
    updates = _kept(session).updates
    earlier = updates.pop(statement, None)
    if earlier is not None:
        session.execute(statement, earlier)
    updates[statement] = params


def write_now(session: Session, model: type[Any]) -> None:
    """Write the rows deferred for `model`'s table now, for a statement of this
    transaction that must see them; with them, those of every table deferred before it
    (a parent its rows may point to)."""
    kept_writes: _Kept | None = session.info.get(_KEY)
    if kept_writes is None or model not in kept_writes.rows:
        return
    for earlier in list(kept_writes.rows):
        rows = kept_writes.rows.pop(earlier)
        session.execute(write_only_insert(earlier), rows if len(rows) > 1 else rows[0])
        if earlier is model:
            return


def deferred_rows_of(session: Session, model: type[Any]) -> bool:
    """Whether rows of `model`'s table wait for this transaction's commit."""
    kept_writes: _Kept | None = session.info.get(_KEY)
    return kept_writes is not None and model in kept_writes.rows


def pending(session: Session) -> int:
    """How many writes wait for the commit."""
    kept_writes: _Kept | None = session.info.get(_KEY)
    return kept_writes.count() if kept_writes is not None else 0


@event.listens_for(Session, "before_commit")
def _write_deferred(session: Session) -> None:
    kept_writes: _Kept | None = session.info.pop(_KEY, None)
    if kept_writes is None or kept_writes.count() == 0:
        return
    mergeable = session.get_bind().dialect.name == "postgresql" and all(
        len(rows) <= _MAX_ROWS_MERGED and len({tuple(r) for r in rows}) == 1
        for rows in kept_writes.rows.values()
    )
    if not mergeable:  # each table in the order first deferred (a parent before its rows)
        for model, rows in kept_writes.rows.items():
            session.execute(write_only_insert(model), rows if len(rows) > 1 else rows[0])
        for statement, params in kept_writes.updates.items():
            session.execute(statement, params)
        return
    _write_merged(session, kept_writes.rows, kept_writes.updates)


def _write_merged(
    session: Session,
    rows: dict[type[Any], list[dict[str, Any]]],
    updates: dict[UpdateBase, dict[str, Any]],
) -> None:
    """PostgreSQL: `rows` and `updates` in one statement (one alone as itself)."""
    if not updates and len(rows) == 1:
        ((model, only),) = rows.items()
        if len(only) == 1:
            session.execute(write_only_insert(model), only[0])
            return
    if not rows and len(updates) == 1:
        ((only_update, only_params),) = updates.items()
        session.execute(only_update, only_params)
        return
    tables = tuple((model, len(r), tuple(r[0])) for model, r in rows.items())
    shape = ("deferred", tables, tuple(updates))
    statement = kept(shape, lambda: _merged_statement(tables, tuple(updates)))
    params: dict[str, Any] = {}
    for i, model_rows in enumerate(rows.values()):
        for j, row in enumerate(model_rows):
            params.update({f"d{i}_{j}_{name}": value for name, value in row.items()})
    for update_params in updates.values():
        params.update(update_params)
    session.execute(statement, params)


def _merged_statement(
    tables: tuple[tuple[type[Any], int, tuple[str, ...]], ...], updates: tuple[UpdateBase, ...]
) -> Any:
    ctes = []
    for i, (model, count, names) in enumerate(tables):
        table = table_of(model)
        rows = [
            [bindparam(f"d{i}_{j}_{name}", type_=table.c[name].type) for name in names]
            for j in range(count)
        ]
        if count == 1:
            written = insert(table).values(dict(zip(names, rows[0], strict=True)))
        else:
            # INSERT ... SELECT ... UNION ALL SELECT ..., not a multi-row VALUES: SQLAlchemy
            # gives a multi-row VALUES no cache key, so it would be compiled on every
            # commit; the rows still go in in order (their keys are drawn in it)
            written = insert(table).from_select(
                list(names), union_all(*(select(*row) for row in rows))
            )
        ctes.append(written.cte(f"d{i}"))
    ctes.extend(statement.cte(f"s{k}") for k, statement in enumerate(updates))
    return select(literal_column("1")).add_cte(*ctes)


@event.listens_for(Session, "after_transaction_end")
def _drop_deferred(session: Session, transaction: SessionTransaction) -> None:
    """The outermost transaction ended: committed (its writes were made and taken out
    before), rolled back or closed. What it kept goes with it."""
    if transaction.parent is None:
        session.info.pop(_KEY, None)
