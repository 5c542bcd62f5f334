"""`INSERT … ON CONFLICT DO NOTHING RETURNING pk` on SQLite and PostgreSQL alike."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from kassa.storage.prebuilt import binds, kept


def unless_exists(
    session: Session, model: Any, values: dict[str, Any], unique_on: list[str]
) -> Any:
    """The statement of `insert_unless_exists`, not yet executed (e.g. for a CTE)."""
    insert = sqlite_insert if session.get_bind().dialect.name == "sqlite" else pg_insert
    table = model.__table__
    key = next(iter(table.primary_key.columns))
    return (
        insert(table)  # the table, not the class: a Core statement, no ORM bulk machinery
        .values(**values)
        .on_conflict_do_nothing(index_elements=unique_on)
        .returning(key)
    )


def unless_exists_prebuilt(
    session: Session,
    model: Any,
    columns: tuple[str, ...],
    unique_on: tuple[str, ...],
    constants: tuple[tuple[str, Any], ...] = (),
) -> Any:
    """The statement of `unless_exists` with a bind parameter per column in `columns`
    (named after it, typed like it) and fixed `constants`, built once per dialect and
    kept: execute it with `{column: value}`. On a hot path a statement built on every
    call costs its construction and cache key each time, about as much CPU as running it
    (measured on the webhook ack, issue 10)."""
    dialect = session.get_bind().dialect.name
    return kept(
        ("unless_exists", dialect, model, columns, unique_on, constants),
        lambda: unless_exists(
            session,
            model,
            {**binds(model.__table__, columns), **dict(constants)},
            list(unique_on),
        ),
    )


def insert_unless_exists(
    session: Session, model: Any, values: dict[str, Any], unique_on: list[str]
) -> Any:
    """Insert a row; returns its (first) primary-key value, or None if a row with the same
    `unique_on` exists. The unique constraint decides, so concurrent inserts elect exactly
    one winner."""
    row = session.execute(unless_exists(session, model, values, unique_on)).first()
    return None if row is None else row[0]


def increment(session: Session, model: Any, key: dict[str, Any], column: str) -> int:
    """Add one to `column` of the row of `model` named by `key` (a unique constraint),
    creating it at 1; returns the new value. One statement (`INSERT … ON CONFLICT DO
    UPDATE … RETURNING`) that leaves the row locked until the transaction ends, so the
    numbers it hands out are consecutive and a rollback gives its number back."""
    dialect = session.get_bind().dialect.name

    def build() -> Any:
        insert = sqlite_insert if dialect == "sqlite" else pg_insert
        table = model.__table__
        counter = table.c[column]
        return (
            insert(table)
            .values(**binds(table, key), **{column: 1})
            .on_conflict_do_update(index_elements=list(key), set_={column: counter + 1})
            .returning(counter)
        )

    statement = kept(("increment", dialect, model, tuple(key), column), build)
    return int(session.execute(statement, key).scalar_one())


def dialect_insert(session: Session, model: Any) -> Any:
    """`INSERT INTO <model's table>` as the session's dialect builds it, for statements with
    an `ON CONFLICT` clause (`on_conflict_do_update(..., where=...)`, or a partial unique
    index named with `index_where`): SQLite and PostgreSQL spell them alike."""
    insert = sqlite_insert if session.get_bind().dialect.name == "sqlite" else pg_insert
    return insert(model.__table__)
