"""The business side of `GET /metrics`, counted in the database at scrape time.

Payments, provider events and jobs change in every kassa process: API processes settle
payments they confirm, workers (embedded in `kassa serve`, or any number of `kassa
worker`, on any host) apply events, settle the rest and run the jobs. A counter kept in
one process's memory would see that process's share only; the database sees them all, so
these figures are read from it when Prometheus scrapes, and every API process answers
the same totals. (The per-request figures, which only the process that served the
request knows, are `kassa.api.metrics`'s.)

What each figure is, and what it costs a scrape:

- **Payments** by provider and current status: one `GROUP BY` over `payments` (never
  pruned, so it grows with the shop; a scan of the table).
- **Provider events** by provider and state: `pending` (stored, not applied yet),
  `applied`, `ignored`, `refused` (`services.webhooks.outcome_class`). Applied events are
  pruned after `KASSA_EVENT_RETENTION_S`, so these are what the database holds, a gauge,
  not a count since the start: one `GROUP BY` over `provider_events` (a scan of the
  retention window). Received deliveries (new or duplicate) are counted where they arrive,
  in the API (`kassa.api.metrics`).
- **Jobs** by kind and state for the live queue and the dead letters (`queued`,
  `running`, `dead`), and how long the longest-waiting due job has waited: one `GROUP BY`
  over the rows in those states, through `ix_jobs_claimable` (state, run_after). Done jobs
  are left out: they are history, pruned after `KASSA_JOB_RETENTION_S`, and counting them
  would scan a week of work on every scrape for a number that says only how much is kept.

- **Outgoing webhook deliveries** by state (`pending`, `succeeded`, `failed`): one
  `GROUP BY` over `webhook_deliveries` (a scan; deliveries are kept with their endpoint).

The two scans grow with the shop: on PostgreSQL on a 2-core test machine, about 0.1 s
per 200,000 payments and 0.14 s per 200,000 provider events kept, against 0.2 ms for the
jobs (the scrape reports its own `kassa_metrics_database_read_seconds`).

Label values that may have no row yet (a provider with no payment, a kind with no dead
job) are reported as 0, so a series does not vanish when a queue drains.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from kassa.domain.payments import PaymentStatus
from kassa.services.context import Clock
from kassa.services.emails import email_counts
from kassa.services.jobs import DEAD, RUNNING
from kassa.services.webhook_endpoints import FAILED, SUCCEEDED
from kassa.services.webhook_endpoints import PENDING as PENDING_DELIVERY
from kassa.services.webhooks import APPLIED, OUTCOME_PREFIXES, PENDING
from kassa.storage.database import Database
from kassa.storage.outbox import QUEUED
from kassa.storage.tables import Job, Payment, ProviderEvent, WebhookDelivery

JOB_STATES = (QUEUED, RUNNING, DEAD)
EVENT_STATES = (PENDING, APPLIED, *(name for name, _ in OUTCOME_PREFIXES))
PAYMENT_STATUSES = tuple(status.value for status in PaymentStatus)
DELIVERY_STATES = (PENDING_DELIVERY, SUCCEEDED, FAILED)


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """The database's figures at one scrape. Keys are label values, in label order."""

    payments: dict[tuple[str, str], int]  # (provider, status) -> payments
    events: dict[tuple[str, str], int]  # (provider, state) -> provider events kept
    jobs: dict[tuple[str, str], int]  # (kind, state) -> jobs
    oldest_due_job_s: float  # how long the longest-waiting due job has waited; 0 if none
    # outgoing webhook deliveries by state: pending, succeeded, failed (issue 12)
    deliveries: dict[str, int] = field(default_factory=dict)
    # (kind, status) -> the buyer's e-mails (issue 12): a GROUP BY over `emails`, which is
    # never pruned (a scan that grows with the shop, like payments)
    emails: dict[tuple[str, str], int] = field(default_factory=dict)


def _event_state() -> ColumnElement[str]:
    """`services.webhooks.outcome_class` in SQL, from the same table of prefixes."""
    whens: list[tuple[ColumnElement[bool], str]] = [(ProviderEvent.applied_at.is_(None), PENDING)]
    for name, prefixes in OUTCOME_PREFIXES:
        matches = [ProviderEvent.outcome.startswith(prefix, autoescape=True) for prefix in prefixes]
        whens.append((or_(*matches), name))
    return case(*whens, else_=APPLIED)


def _zeros(first: Iterable[str], second: Iterable[str]) -> dict[tuple[str, str], int]:
    return {(a, b): 0 for a in first for b in second}


class Metrics:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def read(
        self,
        *,
        payment_providers: Iterable[str] = (),
        webhook_providers: Iterable[str] = (),
        job_kinds: Iterable[str] = (),
    ) -> MetricsSnapshot:
        """The figures now. The providers and job kinds named are reported (as 0) even
        without a row; others found in the database are reported too."""
        now = self._clock()
        with self._db.transaction(read_only=True) as session:
            payments = _zeros(payment_providers, PAYMENT_STATUSES)
            payments.update(self._payments(session))
            events = _zeros(webhook_providers, EVENT_STATES)
            events.update(self._events(session))
            jobs = _zeros(job_kinds, JOB_STATES)
            oldest_due = self._jobs(session, now, jobs)
            deliveries = dict.fromkeys(DELIVERY_STATES, 0)
            deliveries.update(self._deliveries(session))
            emails = email_counts(session)
        waited = (now - oldest_due).total_seconds() if oldest_due is not None else 0.0
        return MetricsSnapshot(
            payments, events, jobs, max(0.0, waited), deliveries=deliveries, emails=emails
        )

    @staticmethod
    def _payments(session: Session) -> dict[tuple[str, str], int]:
        rows = session.execute(
            select(Payment.provider, Payment.status, func.count()).group_by(
                Payment.provider, Payment.status
            )
        )
        return {(provider, status): n for provider, status, n in rows}

    @staticmethod
    def _events(session: Session) -> dict[tuple[str, str], int]:
        state = _event_state().label("state")
        rows = session.execute(
            select(ProviderEvent.provider, state, func.count()).group_by(
                ProviderEvent.provider, state
            )
        )
        return {(provider, name): n for provider, name, n in rows}

    @staticmethod
    def _jobs(session: Session, now: datetime, into: dict[tuple[str, str], int]) -> datetime | None:
        """Counts the live and dead jobs `into` (kind, state); answers the `run_after` of
        the longest-waiting queued job that is due."""
        due_since = func.min(Job.run_after).filter(Job.state == QUEUED, Job.run_after <= now)
        rows = session.execute(
            select(Job.kind, Job.state, func.count(), due_since)
            .where(Job.state.in_(JOB_STATES))
            .group_by(Job.kind, Job.state)
        )
        oldest: datetime | None = None
        for kind, state, n, since in rows:
            into[(kind, state)] = n
            if since is not None and (oldest is None or since < oldest):
                oldest = since
        return oldest

    @staticmethod
    def _deliveries(session: Session) -> dict[str, int]:
        """Outgoing webhook deliveries by state: one `GROUP BY` over the table (a scan;
        deliveries are kept with their endpoint)."""
        rows = session.execute(
            select(WebhookDelivery.state, func.count()).group_by(WebhookDelivery.state)
        )
        return {state: n for state, n in rows}
