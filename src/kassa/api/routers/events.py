"""kassa's own events (issue 12): what changed, with the resource as the API showed it."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Query

from kassa.api.auth import kassa_dependency, require
from kassa.api.problem_docs import problems
from kassa.api.routers.common import ListParams, list_params, router
from kassa.api.schemas import EventOut, ListOf
from kassa.bootstrap import Kassa
from kassa.domain.roles import Permission
from kassa.services.context import RequestContext
from kassa.services.events import EVENT_TYPES

events = router("/v1/events", "events")
Core = Annotated[Kassa, Depends(kassa_dependency)]
Reader = Annotated[RequestContext, Depends(require(Permission.READ_EVENTS))]
_ONE_OF_THE_TYPES = f"^({'|'.join(re.escape(t) for t in EVENT_TYPES)})$"


@events.get("", response_model=ListOf[EventOut])
def list_events(
    ctx: Reader,
    kassa: Core,
    page: Annotated[ListParams, Depends(list_params)],
    type: Annotated[
        str | None, Query(pattern=_ONE_OF_THE_TYPES, description="only events of this type")
    ] = None,
) -> object:
    """kassa's events, newest first: each state change the contract lists, with the
    resource (`data.object`) as the API returned it at that moment."""
    return kassa.event_log.list(limit=page.limit, starting_after=page.starting_after, type=type)


@events.get("/{event_id}", response_model=EventOut, responses=problems(404, "event_not_found"))
def get_event(event_id: str, ctx: Reader, kassa: Core) -> object:
    return kassa.event_log.get(event_id)
