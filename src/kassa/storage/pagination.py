"""Cursor pagination (`limit`, `starting_after`), newest first, on the surrogate key."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.orm import Session

from kassa.domain.errors import FieldProblem, invalid

T = TypeVar("T")
U = TypeVar("U")

MAX_LIMIT = 100


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    data: Sequence[T]
    has_more: bool

    def map(self, fn: Callable[[T], U]) -> Page[U]:
        return Page([fn(item) for item in self.data], self.has_more)


@dataclass(frozen=True, slots=True)
class CreatedRange:
    """The time filter of a list: `created[gte]` <= created < `created[lt]` (either open)."""

    gte: datetime | None = None
    lt: datetime | None = None

    def apply(self, stmt: Select[Any], column: Any) -> Select[Any]:
        if self.gte is not None:
            stmt = stmt.where(column >= self.gte)
        if self.lt is not None:
            stmt = stmt.where(column < self.lt)
        return stmt


ANY_TIME = CreatedRange()


def paginate(
    session: Session,
    model: Any,
    stmt: Select[Any],
    limit: int,
    starting_after: str | None,
    cursor_scope: ColumnElement[bool] | None = None,
) -> Page[Any]:
    """Rows of `stmt` (which selects `model`) newer-first, after the row `starting_after`.

    `cursor_scope` limits which rows may serve as a cursor (what the caller may see);
    other filters do not apply to it, so a row that left a filtered list still works."""
    if not 1 <= limit <= MAX_LIMIT:
        raise invalid(
            "validation_error",
            f"limit must be between 1 and {MAX_LIMIT}",
            FieldProblem(("query", "limit"), f"must be 1..{MAX_LIMIT}"),
        )
    if starting_after is not None:
        lookup = select(model.pk).where(model.id == starting_after)
        if cursor_scope is not None:
            lookup = lookup.where(cursor_scope)
        cursor = session.scalar(lookup)
        if cursor is None:
            raise invalid(
                "invalid_cursor",
                f"starting_after={starting_after!r} names no object in this list",
                FieldProblem(("query", "starting_after"), "unknown id"),
            )
        stmt = stmt.where(model.pk < cursor)
    rows = list(session.scalars(stmt.order_by(model.pk.desc()).limit(limit + 1)))
    return Page(rows[:limit], len(rows) > limit)
