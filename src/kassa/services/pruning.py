"""Pruning: the tables that only grow, cut back to their retention in short batches.

Six kinds of rows outlive their use, and only these are ever deleted:

- **done jobs** finished more than `job_retention_s` ago. A done job's effects committed
  with it; the row is history for `kassa jobs list`. Dead jobs stay (an operator has to
  look at them and may retry them), and queued or running ones are work still to do.
- **applied provider events** applied more than `event_retention_s` ago. The row is also
  what recognises a redelivered event (the unique (provider, event id)), and Stripe
  redelivers for up to three days, so the retention must be well beyond that (default
  30 days, at least 3 days: see `Settings.event_retention_s`). An event that was never
  applied stays whatever its age: its effect is still owed.
- **Idempotency-Keys** past `idempotency_retention_s`, through
  `IdempotencyStore.purge_expired` (the one place that knows what "expired" means).
- **kassa's own events** (`events`, issue 12) written more than
  `outgoing_event_retention_s` ago *and* dispatched: the dispatcher has handed them to
  every consumer (webhook deliveries, e-mails) in the transaction that marked them, so
  nothing is owed from them any more; one not yet dispatched stays whatever its age.
  What the consumers keep about an event (a delivery log row) must not hold the event
  back: a table that references `events.pk` must not block this delete (no foreign key,
  or one that cascades or sets null), or a consumer's history would keep every event
  forever; pruning that history is the consumer's own business.
- **outgoing webhook deliveries** that ended (delivered, or failed for good) more than
  `webhook_delivery_retention_s` ago, with their attempts (a foreign key that cascades).
  A pending one stays whatever its age, and an admin's retry makes an ended one pending
  again (clearing `finished_at`), so a delivery being retried is never taken. The
  delivery log of an endpoint and of an order (the dashboard) then starts at the
  retention; Stripe keeps its own event history for 30 days, the default here too.
- **e-mails** sent or failed more than `email_retention_s` ago (by `created_at`: an
  e-mail ends within days of being queued). A queued one stays. Pruning a row cannot
  send its message again: an e-mail is queued only when its event is dispatched, which
  happens once. The documents an e-mail carried (invoices, credit notes) are kept.

Nothing money or the audit trail depends on is touched: orders, their lines, payments,
refunds, provider attempts, the audit log, wallets and their ledger, documents.

Why batches: one `DELETE` of a year of jobs would run for minutes in one transaction,
holding its row locks, bloating the table it cannot vacuum meanwhile, and on SQLite
keeping every writer out. Each batch here is its own transaction of at most `batch` rows,
picked oldest first through an index with `FOR UPDATE SKIP LOCKED` (PostgreSQL), so two
workers pruning at once never wait on each other. A pass takes turns between the
tables and stops after `max_pass_s` (the worker runs it between jobs, so a large backlog
after an upgrade is worked off over several passes instead of stalling the queue).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, delete, select

from kassa.services import emails, webhook_endpoints
from kassa.services.context import Clock
from kassa.services.idempotency import IdempotencyStore
from kassa.services.jobs import DONE
from kassa.storage.database import Database
from kassa.storage.tables import Email, Event, Job, ProviderEvent, WebhookDelivery

log = logging.getLogger("kassa.pruning")

Prunable = Job | ProviderEvent | Event | WebhookDelivery | Email

DEFAULT_MAX_PASS_S = 10.0


@dataclass(frozen=True, slots=True)
class PruneReport:
    """What one pass deleted, per table, in how many batches and how long; `complete` is
    False when the pass stopped at its time limit with rows still to prune."""

    jobs: int
    events: int
    idempotency_keys: int
    batches: int
    seconds: float
    complete: bool
    outgoing_events: int = 0  # kassa's own events (`events` above: the providers')
    webhook_deliveries: int = 0
    emails: int = 0


@dataclass
class _Table:
    """One kind of prunable row: a step deletes one batch and says how many rows went."""

    name: str
    step: Callable[[], int]
    deleted: int = 0
    done: bool = False


class Pruning:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        idempotency: IdempotencyStore,
        *,
        job_retention_s: int,
        event_retention_s: int,
        batch: int,
        max_pass_s: float | None = DEFAULT_MAX_PASS_S,
        outgoing_event_retention_s: int = 30 * 24 * 3600,
        webhook_delivery_retention_s: int = 30 * 24 * 3600,
        email_retention_s: int = 90 * 24 * 3600,
    ) -> None:
        if batch < 1:
            raise ValueError("the pruning batch must hold at least one row")
        self._db = db
        self._clock = clock
        self._idempotency = idempotency
        self._job_retention = timedelta(seconds=job_retention_s)
        self._event_retention = timedelta(seconds=event_retention_s)
        self._batch = batch
        self._max_pass_s = max_pass_s
        self._outgoing_event_retention = timedelta(seconds=outgoing_event_retention_s)
        self._delivery_retention = timedelta(seconds=webhook_delivery_retention_s)
        self._email_retention = timedelta(seconds=email_retention_s)

    def without_time_limit(self) -> Pruning:
        """This pruning with no `max_pass_s`: a pass goes on until nothing is left (what
        `bench/scale.py` measures: the whole backlog of a shop that never pruned)."""
        unbounded = copy.copy(self)
        unbounded._max_pass_s = None
        return unbounded

    def run(self) -> PruneReport:
        """One pass: batches from each table in turn until none has anything left to
        prune, or `max_pass_s` has passed (the next pass carries on)."""
        began = time.monotonic()
        now = self._clock()
        tables = [
            _Table("jobs", lambda: self._done_jobs(now - self._job_retention)),
            _Table("events", lambda: self._applied_events(now - self._event_retention)),
            _Table("idempotency_keys", lambda: self._idempotency.purge_expired(self._batch)),
            _Table(
                "outgoing_events",
                lambda: self._dispatched_events(now - self._outgoing_event_retention),
            ),
            _Table(
                "webhook_deliveries",
                lambda: self._ended_deliveries(now - self._delivery_retention),
            ),
            _Table("emails", lambda: self._ended_emails(now - self._email_retention)),
        ]
        batches = 0
        while not all(t.done for t in tables) and not self._out_of_time(began):
            for table in tables:
                if table.done:
                    continue
                deleted = table.step()
                batches += 1
                table.deleted += deleted
                table.done = deleted < self._batch
        report = PruneReport(
            jobs=tables[0].deleted,
            events=tables[1].deleted,
            idempotency_keys=tables[2].deleted,
            batches=batches,
            seconds=time.monotonic() - began,
            complete=all(t.done for t in tables),
            outgoing_events=tables[3].deleted,
            webhook_deliveries=tables[4].deleted,
            emails=tables[5].deleted,
        )
        if any(t.deleted for t in tables) or not report.complete:
            log.info(
                "pruned %s batches=%s ms=%s %s",
                " ".join(f"{t.name}={t.deleted}" for t in tables),
                report.batches,
                round(report.seconds * 1000),
                "complete" if report.complete else "behind: the next pass carries on",
            )
        return report

    def _delete(self, oldest: Select[int], model: type[Prunable]) -> int:
        """Delete one batch, `oldest` (a query of `model`'s pks, oldest first): the first
        `batch` of them, each locked and skipped if another pruner holds it (PostgreSQL),
        in one transaction; returns how many went."""
        batch = oldest.limit(self._batch).with_for_update(skip_locked=True).scalar_subquery()
        with self._db.transaction() as session:
            result = session.execute(delete(model).where(model.pk.in_(batch)))
            return int(getattr(result, "rowcount", 0))

    def _out_of_time(self, began: float) -> bool:
        return self._max_pass_s is not None and time.monotonic() - began >= self._max_pass_s

    def _done_jobs(self, cutoff: datetime) -> int:
        """One batch of done jobs finished before `cutoff`, oldest first.

        `run_after < cutoff` adds nothing logically (a job runs after its `run_after`, so
        it finished after it too) but bounds the scan of the (state, run_after) index
        that the claim query already uses, so no index is added for this."""
        oldest = (
            select(Job.pk)
            .where(Job.state == DONE, Job.run_after < cutoff, Job.finished_at < cutoff)
            .order_by(Job.run_after)
        )
        return self._delete(oldest, Job)

    def _applied_events(self, cutoff: datetime) -> int:
        """One batch of events applied before `cutoff`, oldest first. `received_at <
        cutoff` bounds the scan of its index (an event is applied after it arrives)."""
        oldest = (
            select(ProviderEvent.pk)
            .where(
                ProviderEvent.applied_at.is_not(None),
                ProviderEvent.applied_at < cutoff,
                ProviderEvent.received_at < cutoff,
            )
            .order_by(ProviderEvent.received_at)
        )
        return self._delete(oldest, ProviderEvent)

    def _dispatched_events(self, cutoff: datetime) -> int:
        """One batch of kassa's own events written before `cutoff` and dispatched, oldest
        first through `ix_events_created_at`. An undispatched one is never taken: its
        consumers have not had it yet (see the module's docstring, and the note there on
        what may reference an event)."""
        oldest = (
            select(Event.pk)
            .where(Event.dispatched.is_(True), Event.created_at < cutoff)
            .order_by(Event.created_at)
        )
        return self._delete(oldest, Event)

    def _ended_deliveries(self, cutoff: datetime) -> int:
        """One batch of outgoing webhook deliveries that ended before `cutoff`, oldest
        first through `ix_webhook_deliveries_finished_at`; their attempts go with them
        (ON DELETE CASCADE). A pending delivery has no `finished_at` and is never taken."""
        oldest = (
            select(WebhookDelivery.pk)
            .where(
                WebhookDelivery.finished_at < cutoff,
                WebhookDelivery.state.in_((webhook_endpoints.SUCCEEDED, webhook_endpoints.FAILED)),
            )
            .order_by(WebhookDelivery.finished_at)
        )
        return self._delete(oldest, WebhookDelivery)

    def _ended_emails(self, cutoff: datetime) -> int:
        """One batch of e-mails queued before `cutoff` and sent or failed since, oldest
        first through `ix_emails_created_at`. A queued one is never taken."""
        oldest = (
            select(Email.pk)
            .where(Email.created_at < cutoff, Email.status.in_((emails.SENT, emails.FAILED)))
            .order_by(Email.created_at)
        )
        return self._delete(oldest, Email)
