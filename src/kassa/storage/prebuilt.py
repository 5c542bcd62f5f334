"""Statements built once and kept, for the hot paths.

Building a SQLAlchemy statement and its cache key on every call cost about as much CPU as
executing it (measured on the webhook ack and the pay, issue 10). A statement whose shape
depends only on a few fixed things (the dialect, a model, its columns) is built the first
time, with a bind parameter per value, and kept here under those things.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Any, TypeVar

from sqlalchemy import Table, bindparam
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
