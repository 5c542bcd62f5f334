"""Reading kassa's own events: `GET /v1/events` and `GET /v1/events/{id}` (analyst and up).

The events are written by the changes they report (`services/events.py`); this is the
list a shop reads to catch up on what it missed, or to check what its webhook endpoints
were sent. Newest first, the usual cursor pagination, filtered by type on the
(type, pk) index of migration 0013.
"""

from __future__ import annotations

from sqlalchemy import select

from kassa.domain.errors import not_found
from kassa.services.events import EventView
from kassa.services.pagination import Page, paginate
from kassa.storage.database import Database
from kassa.storage.tables import Event


class EventLog:
    def __init__(self, db: Database) -> None:
        self._db = db

    def list(
        self, *, limit: int, starting_after: str | None = None, type: str | None = None
    ) -> Page[EventView]:
        stmt = select(Event)
        if type:
            stmt = stmt.where(Event.type == type)
        with self._db.transaction(read_only=True) as session:
            page = paginate(session, Event, stmt, limit, starting_after)
            return page.map(EventView.of)

    def of_order(self, order_id: str, limit: int = 100) -> tuple[EventView, ...]:
        """The events about one order (its own, its payments', refunds' and documents'),
        newest first: the order page's "webhook events". Pruned ones are gone."""
        stmt = (
            select(Event).where(Event.order_id == order_id).order_by(Event.pk.desc()).limit(limit)
        )
        with self._db.transaction(read_only=True) as session:
            return tuple(EventView.of(row) for row in session.scalars(stmt))

    def get(self, event_id: str) -> EventView:
        with self._db.transaction(read_only=True) as session:
            row = session.scalar(select(Event).where(Event.id == event_id))
            if row is None:
                raise not_found("event_not_found", f"no event {event_id!r}")
            return EventView.of(row)
