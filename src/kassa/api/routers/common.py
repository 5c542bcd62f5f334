"""What every router shares: the route class and list query parameters."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BeforeValidator

from kassa.api.problem_docs import raises
from kassa.api.routing import KassaRoute
from kassa.domain.calendar import WINDOWS
from kassa.services.pagination import CreatedRange


def router(prefix: str, tag: str) -> APIRouter:
    return APIRouter(prefix=prefix, tags=[tag], route_class=KassaRoute)


@dataclass(frozen=True)
class ListParams:
    limit: int
    starting_after: str | None


@raises(422, "invalid_cursor")
async def list_params(
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    starting_after: Annotated[str | None, Query(max_length=64)] = None,
) -> ListParams:
    return ListParams(limit=limit, starting_after=starting_after)


_RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def parse_rfc3339(value: object) -> datetime:
    """An RFC 3339 date-time with its offset (`2026-11-25T00:00:00Z`); nothing looser."""
    match = _RFC3339.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError("must be an RFC 3339 date-time with an offset, e.g. 2026-11-25T00:00:00Z")
    stamp, fraction, offset = match.groups()
    fraction = (fraction or "")[:7]  # microseconds at most
    offset = "+00:00" if offset in ("Z", "z") else offset
    try:
        return datetime.fromisoformat(stamp.replace("t", "T") + fraction + offset)
    except ValueError as exc:
        raise ValueError(f"is not a valid date-time: {exc}") from exc


Rfc3339 = Annotated[datetime, BeforeValidator(parse_rfc3339)]


async def created_range(
    gte: Annotated[
        Rfc3339 | None,
        Query(alias="created[gte]", description="only objects created at or after this time"),
    ] = None,
    lt: Annotated[
        Rfc3339 | None,
        Query(alias="created[lt]", description="only objects created before this time"),
    ] = None,
) -> CreatedRange:
    return CreatedRange(gte=gte, lt=lt)


@dataclass(frozen=True)
class PeriodParams:
    """A period as a query names it (`kassa.domain.calendar` checks it: 422
    `invalid_period` naming the field); the KPIs and the CSV exports take the same."""

    window: str | None
    from_: str | None
    to: str | None


async def period_params(
    window: Annotated[
        str | None,
        Query(max_length=12, description=f"one of {WINDOWS}, ending today; or from and to"),
    ] = None,
    from_: Annotated[
        str | None,
        Query(alias="from", max_length=10, description="first day, YYYY-MM-DD (with to)"),
    ] = None,
    to: Annotated[
        str | None, Query(max_length=10, description="last day, YYYY-MM-DD, included")
    ] = None,
) -> PeriodParams:
    return PeriodParams(window=window, from_=from_, to=to)
