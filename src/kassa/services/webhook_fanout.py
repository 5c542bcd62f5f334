"""The fan-out: one pending webhook delivery per (event, subscribed endpoint).

A consumer of the dispatcher (`services/dispatch.py`): it runs inside the transaction
that marks a batch of events dispatched, so each event is fanned out exactly once, with
the deliveries committed together with the mark or not at all (the unique constraint on
(event, endpoint) would refuse a second row anyway). It costs one select of the enabled
endpoints per batch and one executemany insert; with no endpoint, the select alone.

Only the endpoints enabled when the event is dispatched get it: an endpoint created, or
enabled again, later starts with the events dispatched after that.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from kassa.domain.ids import new_id
from kassa.services.dispatch import DispatchedEvent
from kassa.services.webhook_endpoints import PENDING, subscribed
from kassa.storage.database import table_of
from kassa.storage.tables import WebhookDelivery, WebhookEndpoint
from kassa.storage.upsert import dialect_insert

_ENDPOINTS = table_of(WebhookEndpoint)
_ENABLED = select(_ENDPOINTS.c.pk, _ENDPOINTS.c.events).where(_ENDPOINTS.c.disabled.is_(False))


class WebhookFanOut:
    name = "webhooks"

    def idle_when(self) -> ColumnElement[bool]:
        """No endpoint is enabled: no event is for anyone."""
        return ~exists().where(_ENDPOINTS.c.disabled.is_(False))

    def consume(self, session: Session, events: Sequence[DispatchedEvent], now: datetime) -> None:
        endpoints = session.execute(_ENABLED).all()
        if not endpoints:
            return
        rows: list[dict[str, Any]] = [
            {
                "id": new_id("whd"),
                "endpoint_pk": endpoint.pk,
                "event_pk": event.pk,
                "event_id": event.view.id,
                "event_type": event.view.type,
                "state": PENDING,
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for event in events
            for endpoint in endpoints
            if subscribed(endpoint.events, event.view.type)
        ]
        if rows:
            session.execute(
                dialect_insert(session, WebhookDelivery).on_conflict_do_nothing(
                    index_elements=["event_pk", "endpoint_pk"]
                ),
                rows,
            )
