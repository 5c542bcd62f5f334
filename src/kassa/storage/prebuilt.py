"""Statements built once and kept, for the hot paths.

Building a SQLAlchemy statement and its cache key on every call cost about as much CPU as
executing it (measured on the webhook ack and the pay, issue 10). A statement whose shape
depends only on a few fixed things (the dialect, a model, its columns) is built the first
time, with a bind parameter per value, and kept here under those things.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Any, TypeVar

from sqlalchemy import Table, bindparam, insert
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.elements import BindParameter

S = TypeVar("S")

_KEPT: dict[Hashable, Any] = {}


def kept(key: Hashable, build: Callable[[], S]) -> S:
    """The statement kept under `key`, built by `build` the first time (two threads may
    both build it; the first one stored wins, and they are equal anyway)."""
    statement = _KEPT.get(key)
    if statement is None:
        statement = _KEPT.setdefault(key, build())
    return statement  # type: ignore[no-any-return]


def binds(table: Table, names: Iterable[str]) -> dict[str, BindParameter[Any]]:
    """A bind parameter per column of `table` in `names`, named and typed like it."""
    return {name: bindparam(name, type_=table.c[name].type) for name in names}


def rows_insert(table: Table, rows: list[dict[str, Any]]) -> tuple[Insert, dict[str, Any]]:
    """One `INSERT ... VALUES (...), (...)` of `rows` (each with the same columns), kept
    per table, columns and row count, and its parameters: several rows a transaction
    writes together go in one statement (one execution at the server) rather than one
    per row, as an `executemany` sends them."""
    columns = tuple(rows[0])
    statement = kept(
        ("rows_insert", table, columns, len(rows)),
        lambda: insert(table).values(
            [
                {c: bindparam(f"{c}_{i}", type_=table.c[c].type) for c in columns}
                for i in range(len(rows))
            ]
        ),
    )
    params = {f"{c}_{i}": row[c] for i, row in enumerate(rows) for c in columns}
    return statement, params
