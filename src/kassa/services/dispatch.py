"""The dispatcher: hands each new event to every consumer once, from the worker.

Events are written by the state changes themselves (`services/events.py`); what follows
from one (a delivery row per subscribed webhook endpoint, an e-mail to the buyer) is a
consumer's. The dispatcher takes the oldest undispatched events in one transaction, gives
the batch to each consumer, which adds its own rows in that same transaction, and marks
the events dispatched. Commit or nothing: a crash before the commit leaves the events
undispatched and the next run hands them on again, and a committed batch is never handed
on twice, so every consumer sees every event exactly once.

Concurrency: on PostgreSQL the batch is locked with `FOR UPDATE SKIP LOCKED`, so any number
of workers dispatch side by side without taking the same event; on SQLite the write
transaction is exclusive anyway.

Cost: events are handed on in batches, so a paid order's three or four events cost the
worker a share of one select and one update, not a job each. With no consumer interested
(no webhook endpoint enabled, no SMTP), which is most shops most of the time, a batch is
marked by one statement without a transaction: `UPDATE ... WHERE <no consumer wants
anything>`, each consumer saying in SQL when that is (`idle_when`). Being one statement,
it sees one snapshot: an endpoint enabled before an event committed is seen by it, and
the event goes the full way. (Measured on the browser flow and the webhook apply, issue
12: the full way cost four round trips a batch for nothing.)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, cast

from sqlalchemy import and_, bindparam, select, true, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from kassa.services.context import Clock
from kassa.services.events import EventView
from kassa.storage.database import Database, table_of
from kassa.storage.tables import Event

log = logging.getLogger("kassa.dispatch")
_EVENTS = table_of(Event)

DEFAULT_BATCH = 500


@dataclass(frozen=True, slots=True)
class DispatchedEvent:
    """An event as consumers get it: its row key (for their foreign keys) and its view."""

    pk: int
    view: EventView


class EventConsumer(Protocol):
    """What follows from events: called with each batch, inside the transaction that
    marks the batch dispatched. A consumer adds its rows there (its own work is done
    later, outside any transaction) and must not commit. An exception rolls the batch
    back for every consumer: the next run hands the same events on again."""

    name: str

    def consume(
        self, session: Session, events: Sequence[DispatchedEvent], now: datetime
    ) -> None: ...

    def idle_when(self) -> ColumnElement[bool] | None:
        """A SQL condition under which this consumer would do nothing with any event (no
        endpoint enabled), or None if it may always want one."""
        ...


def _select_batch(dialect: str) -> Any:
    query = (
        select(_EVENTS.c.pk, _EVENTS.c.id, _EVENTS.c.type, _EVENTS.c.created_at, _EVENTS.c.data)
        .where(_EVENTS.c.dispatched.is_(False))
        .order_by(_EVENTS.c.pk)
        .limit(bindparam("batch"))
    )
    return query.with_for_update(skip_locked=True) if dialect == "postgresql" else query


_MARK = (
    update(_EVENTS)
    .where(_EVENTS.c.pk.in_(bindparam("pks", expanding=True)))
    .values(dispatched=True)
)


_ANY_UNDISPATCHED = select(_EVENTS.c.pk).where(_EVENTS.c.dispatched.is_(False)).limit(1)


def _mark_unwanted(idle: ColumnElement[bool]) -> Any:
    """Mark the oldest batch of undispatched events dispatched, if `idle` holds (no
    consumer wants any event): one statement."""
    oldest = (
        select(_EVENTS.c.pk)
        .where(_EVENTS.c.dispatched.is_(False))
        .order_by(_EVENTS.c.pk)
        .limit(bindparam("batch"))
        .scalar_subquery()
    )
    return update(_EVENTS).where(_EVENTS.c.pk.in_(oldest), idle).values(dispatched=True)


class Dispatcher:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        consumers: Sequence[EventConsumer] = (),
        *,
        batch: int = DEFAULT_BATCH,
    ) -> None:
        self._db = db
        self._clock = clock
        self._consumers: list[EventConsumer] = list(consumers)
        self._batch = batch
        self._select = _select_batch("sqlite" if db.is_sqlite else "postgresql")
        self._unwanted: Any = None  # built on first use, once the consumers are known

    def add(self, consumer: EventConsumer) -> None:
        """Register a consumer (the composition root does, once, at start)."""
        self._consumers.append(consumer)
        self._unwanted = None

    def _marker(self) -> Any:
        """The one-statement mark for when no consumer wants anything; None if some
        consumer may always want an event (it then always goes the full way)."""
        if self._unwanted is None:
            conditions = [consumer.idle_when() for consumer in self._consumers]
            idle = [condition for condition in conditions if condition is not None]
            if len(idle) < len(conditions):
                self._unwanted = False
            else:
                self._unwanted = _mark_unwanted(and_(true(), *idle))
        return None if self._unwanted is False else self._unwanted

    def run_once(self) -> int:
        """Hand the oldest undispatched events (one batch) to every consumer; returns how
        many were handed on. Idle (nothing to hand on), one statement: the poll."""
        with self._db.poll() as session:
            if session.execute(_ANY_UNDISPATCHED).first() is None:
                return 0
        marker = self._marker()
        if marker is not None:
            with self._db.autocommit() as session:
                marked = cast(CursorResult[Any], session.execute(marker, {"batch": self._batch}))
                count = marked.rowcount
            if count:
                return count
        with self._db.transaction() as session:
            rows = session.execute(self._select, {"batch": self._batch}).all()
            if not rows:
                return 0
            events = [
                DispatchedEvent(
                    pk=row.pk,
                    view=EventView(
                        id=row.id, type=row.type, created_at=row.created_at, data=row.data
                    ),
                )
                for row in rows
            ]
            now = self._clock()
            for consumer in self._consumers:
                consumer.consume(session, events, now)
            session.execute(_MARK, {"pks": [event.pk for event in events]})
        return len(events)

    def drain(self, max_rounds: int = 1000) -> int:
        """Dispatch until nothing is left (for tests and the CLI)."""
        total = 0
        for _ in range(max_rounds):
            handed = self.run_once()
            total += handed
            if handed < self._batch:
                break
        return total
