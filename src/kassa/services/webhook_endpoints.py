"""Webhook endpoints (admin): where kassa sends its events, and what it sent them.

An endpoint is a URL (vetted by `webhook_targets.TargetPolicy`), the event types it takes
(`["*"]` or a list of `events.EVENT_TYPES`) and its signing secret, `whsec_` + base64 of
24 random bytes, shown only when it is created and when it is rotated. Rotating keeps the
previous secret signing for 24 hours beside the new one (a delivery carries both
signatures, space-separated), so a receiver can switch without losing a delivery.

Every change is audited; no audit record holds a secret. The delivery log of an endpoint
is one row per attempt made, plus one `pending` row for the attempt a pending delivery
has not made yet; `retry` makes a delivery due now (one more attempt after it failed).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kassa.domain.errors import FieldProblem, invalid, not_found
from kassa.domain.ids import new_id
from kassa.services import audit
from kassa.services.context import Clock, RequestContext
from kassa.services.events import EVENT_TYPES
from kassa.services.pagination import Page, paginate
from kassa.services.webhook_targets import TargetPolicy
from kassa.storage.database import Database, table_of
from kassa.storage.tables import (
    Event,
    WebhookDelivery,
    WebhookDeliveryAttempt,
    WebhookEndpoint,
)

ALL_EVENTS = "*"
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24
ROTATION_OVERLAP = timedelta(hours=24)
PENDING, SUCCEEDED, FAILED = "pending", "succeeded", "failed"


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` + base64 of 24 random bytes (192 bits)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def event_filter(requested: Sequence[str]) -> list[str]:
    """`["*"]`, or the distinct types asked for; 422 `unknown_event_type` for any other."""
    if not requested:
        raise invalid(
            "unknown_event_type",
            'events must name at least one event type, or be ["*"]',
            FieldProblem(("body", "events"), "must not be empty"),
        )
    if ALL_EVENTS in requested:
        return [ALL_EVENTS]
    unknown = [name for name in requested if name not in EVENT_TYPES]
    if unknown:
        raise invalid(
            "unknown_event_type",
            f"unknown event type(s) {', '.join(map(repr, unknown))}; known: "
            f"{', '.join(EVENT_TYPES)}, or * for all",
            *(
                FieldProblem(("body", "events", requested.index(name)), "unknown event type")
                for name in unknown
            ),
        )
    return list(dict.fromkeys(requested))


def subscribed(filter_: Iterable[str], event_type: str) -> bool:
    types = list(filter_)
    return ALL_EVENTS in types or event_type in types


@dataclass(frozen=True, slots=True)
class EndpointView:
    id: str
    url: str
    description: str | None
    events: list[str]
    disabled: bool
    disabled_reason: str | None
    failing_since: datetime | None
    previous_secret_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    secret: str | None = None  # only on create and rotate

    @classmethod
    def of(cls, row: WebhookEndpoint, now: datetime | None = None) -> EndpointView:
        overlap = row.previous_secret_until
        return cls(
            id=row.id,
            url=row.url,
            description=row.description,
            events=list(row.events),
            disabled=row.disabled,
            disabled_reason=row.disabled_reason,
            failing_since=row.failing_since,
            previous_secret_expires_at=overlap
            if overlap and (now is None or overlap > now)
            else None,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """One row of an endpoint's delivery log: an attempt made, or the one still to come."""

    id: str  # the delivery's (whd_…): what `retry` takes
    event: str
    type: str
    attempt: int
    status: str
    response_status: int | None
    duration_ms: int | None
    error: str | None
    next_attempt_at: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class OrderDelivery:
    """One event about an order sent (or to be sent) to one endpoint: the order page."""

    id: str
    event: str
    endpoint: str
    url: str
    state: str
    attempts: int
    next_attempt_at: datetime | None
    finished_at: datetime | None


def _summary(row: WebhookEndpoint) -> dict[str, Any]:
    """What the audit log keeps of an endpoint: never its secrets."""
    return {
        "url": row.url,
        "description": row.description,
        "events": list(row.events),
        "disabled": row.disabled,
    }


def _unknown(endpoint_id: str) -> Exception:
    return not_found("webhook_endpoint_not_found", f"no webhook endpoint {endpoint_id!r}")


class WebhookEndpoints:
    def __init__(self, db: Database, clock: Clock, targets: TargetPolicy) -> None:
        self._db = db
        self._clock = clock
        self._targets = targets

    # -- endpoints ------------------------------------------------------------------------

    def create(
        self,
        ctx: RequestContext,
        url: str,
        events: Sequence[str],
        description: str | None = None,
    ) -> EndpointView:
        """A new endpoint, enabled; its view carries the secret (shown only now)."""
        url = self._targets.check(url)  # resolves the host: before any transaction
        types = event_filter(events)
        now = self._clock()
        secret = new_secret()
        with self._db.transaction() as session:
            row = WebhookEndpoint(
                id=new_id("we"),
                url=url,
                description=description,
                events=types,
                secret=secret,
                disabled=False,
                created_at=now,
                updated_at=now,
            )
            session.add(row)
            session.flush()
            audit.record(
                session,
                ctx,
                at=now,
                action="webhook_endpoint.created",
                subject=row.id,
                after=_summary(row),
            )
            return replace(EndpointView.of(row, now), secret=secret)

    def list(self, *, limit: int, starting_after: str | None = None) -> Page[EndpointView]:
        now = self._clock()
        with self._db.transaction(read_only=True) as session:
            page = paginate(
                session, WebhookEndpoint, select(WebhookEndpoint), limit, starting_after
            )
            return page.map(lambda row: EndpointView.of(row, now))

    def get(self, endpoint_id: str) -> EndpointView:
        with self._db.transaction(read_only=True) as session:
            return EndpointView.of(self._row(session, endpoint_id), self._clock())

    def update(
        self,
        ctx: RequestContext,
        endpoint_id: str,
        *,
        url: str | None = None,
        events: Sequence[str] | None = None,
        disabled: bool | None = None,
        description: str | None = None,
        description_given: bool = False,
    ) -> EndpointView:
        """Change what was given. Enabling an endpoint clears why it was disabled and its
        failing streak, so the 5 days of failures count again from its next failure."""
        if url is not None:
            url = self._targets.check(url)
        types = event_filter(events) if events is not None else None
        now = self._clock()
        with self._db.transaction() as session:
            row = self._row(session, endpoint_id, lock=True)
            before = _summary(row)
            if url is not None:
                row.url = url
            if types is not None:
                row.events = types
            if description_given:  # null clears it
                row.description = description
            if disabled is not None and disabled != row.disabled:
                row.disabled = disabled
                row.disabled_reason = "disabled by an admin" if disabled else None
                row.failing_since = None
            row.updated_at = now
            audit.record(
                session,
                ctx,
                at=now,
                action="webhook_endpoint.updated",
                subject=row.id,
                before=before,
                after=_summary(row),
            )
            session.flush()
            return EndpointView.of(row, now)

    def delete(self, ctx: RequestContext, endpoint_id: str) -> None:
        """Remove the endpoint with its deliveries and their log (cascade): nothing more
        is sent to it, pending deliveries included."""
        now = self._clock()
        with self._db.transaction() as session:
            row = self._row(session, endpoint_id, lock=True)
            summary = _summary(row)
            # the ORM would load the children to delete them; the database's cascade does
            session.execute(table_of(WebhookEndpoint).delete().where(WebhookEndpoint.pk == row.pk))
            session.expunge(row)
            audit.record(
                session,
                ctx,
                at=now,
                action="webhook_endpoint.deleted",
                subject=endpoint_id,
                before=summary,
            )

    def rotate_secret(self, ctx: RequestContext, endpoint_id: str) -> EndpointView:
        """A new secret, shown once; the one it replaces signs beside it for 24 hours
        (a second rotation within them ends the first overlap at once)."""
        now = self._clock()
        secret = new_secret()
        with self._db.transaction() as session:
            row = self._row(session, endpoint_id, lock=True)
            row.previous_secret, row.previous_secret_until = row.secret, now + ROTATION_OVERLAP
            row.secret = secret
            row.updated_at = now
            audit.record(
                session,
                ctx,
                at=now,
                action="webhook_endpoint.secret_rotated",
                subject=row.id,
                after={"previous_secret_expires_at": row.previous_secret_until.isoformat()},
            )
            session.flush()
            return replace(EndpointView.of(row, now), secret=secret)

    @staticmethod
    def _row(session: Session, endpoint_id: str, *, lock: bool = False) -> WebhookEndpoint:
        stmt = select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id)
        row = session.scalar(stmt.with_for_update() if lock else stmt)
        if row is None:
            raise _unknown(endpoint_id)
        return row

    # -- deliveries -----------------------------------------------------------------------

    def deliveries(
        self, endpoint_id: str, *, limit: int, starting_after: str | None = None
    ) -> Page[DeliveryRow]:
        """The endpoint's deliveries, newest first, `limit` deliveries a page, each as its
        rows: the attempt still to come (`pending`) first, then the attempts made, latest
        first. The cursor is a delivery's id."""
        with self._db.transaction(read_only=True) as session:
            endpoint = self._row(session, endpoint_id)
            stmt = select(WebhookDelivery).where(WebhookDelivery.endpoint_pk == endpoint.pk)
            mine = WebhookDelivery.endpoint_pk == endpoint.pk  # another's id is no cursor
            page = paginate(session, WebhookDelivery, stmt, limit, starting_after, mine)
            pks = [d.pk for d in page.data]
            attempts: dict[int, list[WebhookDeliveryAttempt]] = {pk: [] for pk in pks}
            if pks:
                for attempt in session.scalars(
                    select(WebhookDeliveryAttempt)
                    .where(WebhookDeliveryAttempt.delivery_pk.in_(pks))
                    .order_by(WebhookDeliveryAttempt.attempt.desc())
                ):
                    attempts[attempt.delivery_pk].append(attempt)
            rows: list[DeliveryRow] = []
            for delivery in page.data:
                rows += _rows_of(delivery, attempts[delivery.pk])
            return Page(data=rows, has_more=page.has_more)

    def deliveries_of_order(self, order_id: str) -> tuple[OrderDelivery, ...]:
        """Every delivery of the events about one order, to any endpoint, oldest first:
        one read (the events by their order index, the deliveries by their unique
        (event_pk, endpoint_pk) index, each joined to its endpoint)."""
        events = select(Event.pk).where(Event.order_id == order_id).scalar_subquery()
        stmt = (
            select(WebhookDelivery, WebhookEndpoint.id, WebhookEndpoint.url)
            .join(WebhookEndpoint, WebhookEndpoint.pk == WebhookDelivery.endpoint_pk)
            .where(WebhookDelivery.event_pk.in_(events))
            .order_by(WebhookDelivery.pk)
        )
        with self._db.transaction(read_only=True) as session:
            return tuple(
                OrderDelivery(
                    id=delivery.id,
                    event=delivery.event_id,
                    endpoint=endpoint_id,
                    url=url,
                    state=delivery.state,
                    attempts=delivery.attempts,
                    next_attempt_at=delivery.next_attempt_at,
                    finished_at=delivery.finished_at,
                )
                for delivery, endpoint_id, url in session.execute(stmt)
            )

    def retry(self, ctx: RequestContext, delivery_id: str) -> DeliveryRow:
        """Make the delivery due now: a failed one gets one more attempt, a pending one
        skips the rest of its wait. (A delivery of a disabled endpoint waits until it is
        enabled again.)"""
        now = self._clock()
        with self._db.transaction() as session:
            delivery = session.scalar(
                select(WebhookDelivery).where(WebhookDelivery.id == delivery_id).with_for_update()
            )
            if delivery is None:
                raise not_found(
                    "webhook_delivery_not_found", f"no webhook delivery {delivery_id!r}"
                )
            before = {"state": delivery.state, "next_attempt_at": _iso(delivery.next_attempt_at)}
            delivery.state, delivery.next_attempt_at, delivery.finished_at = PENDING, now, None
            audit.record(
                session,
                ctx,
                at=now,
                action="webhook_delivery.retried",
                subject=delivery.id,
                before=before,
                after={"state": PENDING, "next_attempt_at": now.isoformat()},
            )
            session.flush()
            return _rows_of(delivery, [])[0]


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def _rows_of(
    delivery: WebhookDelivery, attempts: Sequence[WebhookDeliveryAttempt]
) -> list[DeliveryRow]:
    rows = []
    if delivery.state == PENDING:
        rows.append(
            DeliveryRow(
                id=delivery.id,
                event=delivery.event_id,
                type=delivery.event_type,
                attempt=delivery.attempts + 1,
                status=PENDING,
                response_status=None,
                duration_ms=None,
                error=None,
                next_attempt_at=delivery.next_attempt_at,
                created_at=delivery.created_at,
            )
        )
    rows += [
        DeliveryRow(
            id=delivery.id,
            event=delivery.event_id,
            type=delivery.event_type,
            attempt=a.attempt,
            status=a.status,
            response_status=a.response_status,
            duration_ms=a.duration_ms,
            error=a.error,
            next_attempt_at=a.next_attempt_at,
            created_at=a.created_at,
        )
        for a in attempts
    ]
    return rows
