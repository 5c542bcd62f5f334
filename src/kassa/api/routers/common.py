"""What every router shares: the route class and list query parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Query

from kassa.api.problem_docs import raises
from kassa.api.routing import KassaRoute


def router(prefix: str, tag: str) -> APIRouter:
    return APIRouter(prefix=prefix, tags=[tag], route_class=KassaRoute)


@dataclass(frozen=True)
class ListParams:
    limit: int
    starting_after: str | None


@raises(422, "invalid_cursor")
def list_params(
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    starting_after: Annotated[str | None, Query(max_length=64)] = None,
) -> ListParams:
    return ListParams(limit=limit, starting_after=starting_after)
