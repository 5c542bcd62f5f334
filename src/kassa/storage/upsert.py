"""`INSERT … ON CONFLICT DO NOTHING RETURNING pk` on SQLite and PostgreSQL alike."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session


def insert_unless_exists(
    session: Session, model: Any, values: dict[str, Any], unique_on: list[str]
) -> Any:
    """Insert a row; returns its (first) primary-key value, or None if a row with the same
    `unique_on` exists. The unique constraint decides, so concurrent inserts elect exactly
    one winner."""
    insert = sqlite_insert if session.get_bind().dialect.name == "sqlite" else pg_insert
    table = model.__table__
    key = next(iter(table.primary_key.columns))
    row = session.execute(
        insert(table)  # the table, not the class: a Core statement, no ORM bulk machinery
        .values(**values)
        .on_conflict_do_nothing(index_elements=unique_on)
        .returning(key)
    ).first()
    return None if row is None else row[0]
