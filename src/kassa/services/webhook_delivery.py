"""Sending webhook deliveries: claim one, POST it signed, record the attempt.

The worker runs this on a pool of threads of its own (`worker.WebhookSenders`), apart from
its job loop, so a slow endpoint never delays jobs. Each thread repeats:

1. **Claim** one due delivery under a lease (`lease_s`), in one short transaction. At most
   `PER_ENDPOINT` (2) deliveries of an endpoint are leased at once, so an endpoint that
   hangs holds at most two threads and the others keep serving the other endpoints. The
   claimer locks the endpoint's row (`FOR UPDATE SKIP LOCKED` on PostgreSQL: a busy one
   is skipped, not waited for), counts its leased deliveries and leases the oldest due
   one; on SQLite the write transaction is exclusive anyway.
2. **Send**, outside any transaction: the event's JSON (`EventView.body()`), signed per
   Standard Webhooks with the `standardwebhooks` library (`webhook-id` = the event id,
   `webhook-timestamp`, `webhook-signature`: one `v1,…` per secret that signs now,
   space-separated during a rotation), to the address the URL's host resolves to,
   vetted again now (DNS rebinding; `webhook_targets`). No redirect is followed (it
   could point anywhere). Any 2xx within `timeout_s` (10 s) is a success.
3. **Record** the attempt, if the lease is still ours: succeeded; or failed and due again
   after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (`RETRY_AFTER_S`), then failed for good.
   An endpoint with no success for 5 days of failures is disabled, audited as
   `webhook_endpoint.disabled`.

At least once: a worker killed mid-delivery never records it; the lease runs out and the
delivery is sent again, with the same `webhook-id`, on which receivers dedupe.

Times: due times and leases follow kassa's clock; `webhook-timestamp` is the wall clock
when the request is sent (receivers compare it with theirs).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import BigInteger, bindparam, func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import BindParameter
from standardwebhooks import Webhook

from kassa.services import audit
from kassa.services.context import Clock, RequestContext
from kassa.services.events import EventView
from kassa.services.webhook_endpoints import FAILED, PENDING, SUCCEEDED
from kassa.services.webhook_targets import TargetPolicy, TargetRefused
from kassa.storage.database import Database, table_of, write_only_insert
from kassa.storage.tables import (
    UTC_TIME,
    Event,
    WebhookDelivery,
    WebhookDeliveryAttempt,
    WebhookEndpoint,
)

log = logging.getLogger("kassa.webhooks")

# seconds after attempt n (1-based) failed before attempt n + 1; after the last, failed
RETRY_AFTER_S = (5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600)
PER_ENDPOINT = 2
DISABLE_AFTER = timedelta(days=5)
TIMEOUT_S = 10.0
MAX_ERROR = 500
SYSTEM = RequestContext.system()


def retry_delay_s(attempt: int) -> int | None:
    """Seconds until the next attempt after attempt `attempt` failed; None: no more."""
    return RETRY_AFTER_S[attempt - 1] if 1 <= attempt <= len(RETRY_AFTER_S) else None


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    pk: int
    id: str
    endpoint_pk: int
    url: str
    secrets: tuple[str, ...]
    event_id: str
    body: str | None  # None: the event was pruned
    attempt: int
    failing: bool = False  # the endpoint's failing streak had begun when it was claimed


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    response_status: int | None
    duration_ms: int
    error: str | None
    final: bool = False  # no point in another attempt (the event is gone)


def signature(secrets: tuple[str, ...], msg_id: str, sent_at: datetime, body: str) -> str:
    """The `webhook-signature` header: one `v1,<base64>` per secret, space-separated."""
    return " ".join(Webhook(secret).sign(msg_id, sent_at, body) for secret in secrets)


_ANY_DUE = (
    select(WebhookDelivery.pk)
    .where(
        WebhookDelivery.state == PENDING,
        WebhookDelivery.next_attempt_at <= bindparam("now", type_=UTC_TIME),
    )
    .limit(1)
)


_DELIVERIES = table_of(WebhookDelivery)
# An attempt's outcome, if the delivery is still this sender's (built once: every delivery)
_RECORD = (
    update(_DELIVERIES)
    .where(
        _DELIVERIES.c.pk == bindparam("delivery_pk"),
        _DELIVERIES.c.locked_by == bindparam("worker"),
        _DELIVERIES.c.state == PENDING,
    )
    .values(
        state=bindparam("new_state"),
        attempts=bindparam("attempt"),
        next_attempt_at=bindparam("due_at", type_=UTC_TIME),
        finished_at=bindparam("ended_at", type_=UTC_TIME),
        lease_until=None,
        locked_by=None,
    )
    .returning(_DELIVERIES.c.pk)
)


_ENDPOINTS = table_of(WebhookEndpoint)
_EVENTS = table_of(Event)
_NOW = bindparam("now", type_=UTC_TIME)
_THIS_ENDPOINT: BindParameter[int] = bindparam("of_endpoint", type_=BigInteger())
# The endpoint (enabled), with how many of its pending deliveries are leased now
_READ_ENDPOINT = select(
    _ENDPOINTS.c.url,
    _ENDPOINTS.c.secret,
    _ENDPOINTS.c.previous_secret,
    _ENDPOINTS.c.previous_secret_until,
    _ENDPOINTS.c.failing_since,
    select(func.count())
    .where(
        _DELIVERIES.c.endpoint_pk == _THIS_ENDPOINT,
        _DELIVERIES.c.state == PENDING,
        _DELIVERIES.c.lease_until >= _NOW,
    )
    .scalar_subquery()
    .label("leased"),
).where(_ENDPOINTS.c.pk == _THIS_ENDPOINT, _ENDPOINTS.c.disabled.is_(False))
# ... locked, so that claimers of one endpoint count its leases one after the other
# (PostgreSQL; a busy endpoint is skipped, not waited for)
_LOCK_ENDPOINT = _READ_ENDPOINT.with_for_update(of=_ENDPOINTS, skip_locked=True)


_OLDEST_FREE = (
    select(func.min(_DELIVERIES.c.next_attempt_at))
    .where(
        _DELIVERIES.c.endpoint_pk == _ENDPOINTS.c.pk,
        _DELIVERIES.c.state == PENDING,
        _DELIVERIES.c.next_attempt_at <= _NOW,
        or_(_DELIVERIES.c.lease_until.is_(None), _DELIVERIES.c.lease_until < _NOW),
    )
    .scalar_subquery()
)
_CANDIDATES = select(_ENDPOINTS.c.pk, _OLDEST_FREE.label("since")).where(
    _ENDPOINTS.c.disabled.is_(False)
)


def _lease(locking: bool) -> Any:
    """Lease the endpoint's oldest due, free delivery to `owner` until `lease_to`."""
    oldest = (
        select(_DELIVERIES.c.pk)
        .where(
            _DELIVERIES.c.endpoint_pk == _THIS_ENDPOINT,
            _DELIVERIES.c.state == PENDING,
            _DELIVERIES.c.next_attempt_at <= _NOW,
            or_(_DELIVERIES.c.lease_until.is_(None), _DELIVERIES.c.lease_until < _NOW),
        )
        .order_by(_DELIVERIES.c.next_attempt_at, _DELIVERIES.c.pk)
        .limit(1)
    )
    if locking:
        oldest = oldest.with_for_update(skip_locked=True)
    # The endpoint's leases counted again here, not only in the read that locked it: on
    # PostgreSQL (READ COMMITTED) that read's snapshot predates winning the lock, so it can
    # miss the lease of the claimer that held the lock just before; this statement's
    # snapshot is taken after the lock is ours and sees every lease committed under it.
    leased = _DELIVERIES.alias("leased")
    leased_now = (
        select(func.count())
        .select_from(leased)
        .where(
            leased.c.endpoint_pk == _THIS_ENDPOINT,
            leased.c.state == PENDING,
            leased.c.lease_until >= _NOW,
        )
        .scalar_subquery()
    )
    return (
        update(_DELIVERIES)
        .where(_DELIVERIES.c.pk == oldest.scalar_subquery(), leased_now < PER_ENDPOINT)
        .values(lease_until=bindparam("lease_to", type_=UTC_TIME), locked_by=bindparam("owner"))
        .returning(
            _DELIVERIES.c.pk,
            _DELIVERIES.c.id,
            _DELIVERIES.c.event_pk,
            _DELIVERIES.c.event_id,
            _DELIVERIES.c.attempts,
        )
    )


_LEASE, _LEASE_LOCKING = _lease(False), _lease(True)
_EVENT = select(_EVENTS.c.id, _EVENTS.c.type, _EVENTS.c.created_at, _EVENTS.c.data).where(
    _EVENTS.c.pk == bindparam("event_pk")
)


class WebhookSender:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        targets: TargetPolicy,
        *,
        lease_s: int = 60,
        timeout_s: float = TIMEOUT_S,
        wall: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._db = db
        self._clock = clock
        self._targets = targets
        self._lease = timedelta(seconds=lease_s)
        self._wall = wall
        self._timeout_ms = round(timeout_s * 1000)
        self._lock_rows = not db.is_sqlite
        self._timeout_s = timeout_s
        self._transport = transport
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()

    @property
    def _http(self) -> httpx.Client:
        """One client for every sending thread (httpx's is thread-safe): pooled
        connections; no proxies from the environment, no redirects (a redirect is not
        re-vetted). Made on first use: only the worker sends, and every API process builds
        a `Kassa` too."""
        with self._client_lock:
            if self._client is None:
                self._client = httpx.Client(
                    timeout=self._timeout_s,
                    follow_redirects=False,
                    trust_env=False,
                    transport=self._transport,
                )
            return self._client

    def close(self) -> None:
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def run_once(self, worker: str) -> bool:
        """Claim, send and record one delivery; False when none was due."""
        claimed = self.claim(worker)
        if claimed is None:
            return False
        self.record(claimed, self.send(claimed), worker)
        return True

    def drain(self, worker: str = "drain", max_rounds: int = 10_000) -> int:
        """Send every due delivery, one after another (tests and the CLI)."""
        sent = 0
        while sent < max_rounds and self.run_once(worker):
            sent += 1
        return sent

    # -- claiming -------------------------------------------------------------------------

    def claim(self, worker: str) -> ClaimedDelivery | None:
        now = self._clock()
        with self._db.poll() as session:  # idle senders ask often: one statement
            if session.execute(_ANY_DUE, {"now": now}).first() is None:
                return None
        with self._db.transaction() as session:
            for endpoint_pk in self._candidates(session, now):
                claimed = self._claim_of(session, endpoint_pk, worker, now)
                if claimed is not None:
                    return claimed
        return None

    @staticmethod
    def _candidates(session: Session, now: datetime) -> list[int]:
        """Enabled endpoints with a free due delivery, the one whose delivery has waited
        longest first: one seek per endpoint (`ix_webhook_deliveries_endpoint_due`), not
        an aggregate over the whole backlog, which grew with it (bench/notifications.py).
        Whether an endpoint has a free slot is for `_claim_of`, under its lock."""
        rows = [row for row in session.execute(_CANDIDATES, {"now": now}) if row.since]
        return [row.pk for row in sorted(rows, key=lambda row: (row.since, row.pk))]

    def _claim_of(
        self, session: Session, endpoint_pk: int, worker: str, now: datetime
    ) -> ClaimedDelivery | None:
        """Lease `endpoint_pk`'s oldest due delivery, if fewer than PER_ENDPOINT are leased:
        Core statements built once, the endpoint locked and its leases counted in one, the
        delivery picked and leased in another."""
        endpoint = session.execute(
            _LOCK_ENDPOINT if self._lock_rows else _READ_ENDPOINT,
            {"of_endpoint": endpoint_pk, "now": now},
        ).first()
        if endpoint is None:  # another claimer holds it, or it was disabled or deleted
            return None
        if endpoint.leased >= PER_ENDPOINT:
            return None
        delivery = session.execute(
            _LEASE_LOCKING if self._lock_rows else _LEASE,
            {
                "of_endpoint": endpoint_pk,
                "now": now,
                "lease_to": now + self._lease,
                "owner": worker,
            },
        ).first()
        if delivery is None:
            return None
        event = session.execute(_EVENT, {"event_pk": delivery.event_pk}).first()
        secrets = [endpoint.secret]
        until = endpoint.previous_secret_until
        if endpoint.previous_secret and until is not None and until > now:
            secrets.append(endpoint.previous_secret)
        body = (
            json.dumps(
                EventView(
                    id=event.id, type=event.type, created_at=event.created_at, data=event.data
                ).body(),
                separators=(",", ":"),
                ensure_ascii=False,
            )
            if event is not None
            else None
        )
        return ClaimedDelivery(
            pk=delivery.pk,
            id=delivery.id,
            endpoint_pk=endpoint_pk,
            url=endpoint.url,
            secrets=tuple(secrets),
            event_id=delivery.event_id,
            body=body,
            attempt=delivery.attempts + 1,
            failing=endpoint.failing_since is not None,
        )

    # -- sending --------------------------------------------------------------------------

    def send(self, claimed: ClaimedDelivery) -> Outcome:
        """POST the event to the endpoint; never raises."""
        started = time.monotonic()

        def took() -> int:
            return round((time.monotonic() - started) * 1000)

        if claimed.body is None:
            return Outcome(False, None, 0, "the event is no longer kept (pruned)", final=True)
        try:
            target = self._targets.pin(claimed.url)
        except TargetRefused as exc:
            return Outcome(False, None, took(), f"not sent: {exc}"[:MAX_ERROR])
        sent_at = datetime.fromtimestamp(int(self._wall()), UTC)
        headers = {
            "content-type": "application/json",
            "user-agent": "kassa-webhooks/1",
            "webhook-id": claimed.event_id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": signature(
                claimed.secrets, claimed.event_id, sent_at, claimed.body
            ),
        }
        if target.host_header:
            headers["host"] = target.host_header
        extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else None
        try:
            response = self._http.post(
                target.url,
                content=claimed.body.encode(),
                headers=headers,
                extensions=extensions,
            )
        except httpx.TimeoutException:
            return Outcome(False, None, took(), "timed out")
        except httpx.HTTPError as exc:
            return Outcome(False, None, took(), f"{type(exc).__name__}: {exc}"[:MAX_ERROR])
        elapsed = took()
        if elapsed > self._timeout_ms:  # httpx's timeout is per read: a slow drip passes it
            return Outcome(False, response.status_code, elapsed, "answered after the timeout")
        ok = 200 <= response.status_code < 300
        error = None if ok else f"answered {response.status_code}"
        return Outcome(ok, response.status_code, elapsed, error)

    # -- recording ------------------------------------------------------------------------

    def record(self, claimed: ClaimedDelivery, outcome: Outcome, worker: str) -> str:
        """Store the attempt if the lease is still ours; returns the delivery's new state,
        or "lost" (its lease ran out and another sender took it over).

        Core statements, built once: a conditional UPDATE of the delivery (it is still
        ours, or nothing), the attempt's insert, and the endpoint's failing streak only
        when it changes (a success of an endpoint that was not failing writes nothing
        there): three round trips inside the transaction, where the unit of work took
        five, on every delivery (bench/notifications.py)."""
        now = self._clock()
        delay = None if outcome.ok or outcome.final else retry_delay_s(claimed.attempt)
        next_at = now + timedelta(seconds=delay) if delay is not None else None
        state = SUCCEEDED if outcome.ok else (PENDING if next_at else FAILED)
        with self._db.transaction() as session:
            kept = session.execute(
                _RECORD,
                {
                    "delivery_pk": claimed.pk,
                    "worker": worker,
                    "new_state": state,
                    "attempt": claimed.attempt,
                    "due_at": next_at,
                    "ended_at": None if state == PENDING else now,
                },
            ).first()
            if kept is None:
                log.warning("webhook delivery %s lost its lease; another sender has it", claimed.id)
                return "lost"
            session.execute(
                write_only_insert(WebhookDeliveryAttempt),
                {
                    "delivery_pk": claimed.pk,
                    "attempt": claimed.attempt,
                    "status": SUCCEEDED if outcome.ok else FAILED,
                    "response_status": outcome.response_status,
                    "duration_ms": outcome.duration_ms,
                    "error": outcome.error,
                    "next_attempt_at": next_at,
                    "created_at": now,
                },
            )
            if not outcome.final and (claimed.failing or not outcome.ok):  # not the event's
                self._endpoint_health(session, claimed.endpoint_pk, outcome.ok, now)
        log.info(
            "webhook delivery %s event=%s attempt=%s outcome=%s status=%s ms=%s",
            claimed.id,
            claimed.event_id,
            claimed.attempt,
            state,
            outcome.response_status,
            outcome.duration_ms,
        )
        return state

    @staticmethod
    def _endpoint_health(session: Session, endpoint_pk: int, ok: bool, now: datetime) -> None:
        """A success ends the endpoint's failing streak; a failure starts one, and one that
        has lasted DISABLE_AFTER disables the endpoint."""
        if ok:
            session.execute(
                update(WebhookEndpoint)
                .where(
                    WebhookEndpoint.pk == endpoint_pk, WebhookEndpoint.failing_since.is_not(None)
                )
                .values(failing_since=None)
            )
            return
        endpoint = session.scalar(
            select(WebhookEndpoint).where(WebhookEndpoint.pk == endpoint_pk).with_for_update()
        )
        if endpoint is None:
            return
        if endpoint.failing_since is None:
            endpoint.failing_since = now
        elif not endpoint.disabled and now - endpoint.failing_since >= DISABLE_AFTER:
            endpoint.disabled = True
            endpoint.disabled_reason = (
                f"every delivery failed since {endpoint.failing_since.isoformat()} (5 days)"
            )
            endpoint.updated_at = now
            audit.record(
                session,
                SYSTEM,
                at=now,
                action="webhook_endpoint.disabled",
                subject=endpoint.id,
                before={"disabled": False},
                after={"disabled": True, "disabled_reason": endpoint.disabled_reason},
            )
            log.warning("webhook endpoint %s disabled: %s", endpoint.id, endpoint.disabled_reason)
