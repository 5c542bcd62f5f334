"""The durable job queue behind the background worker.

Jobs are rows in the same database, enqueued inside the transaction of the state change
that causes them (so a job exists if and only if its cause committed). A worker claims
jobs under row locks (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so any number of workers
share the queue without waiting on each other; SQLite's write transaction is exclusive
anyway) and takes a lease. The handler then runs *in the same transaction that marks the
job done*: if the worker dies mid-job, that transaction never commits, the lease runs
out, and another worker runs the job again from the start, so each job's database
effects happen exactly once. Failures are retried with exponential backoff and
dead-lettered after `max_attempts`; `retry_dead` puts them back.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kassa.services.context import Clock
from kassa.storage.database import Database, table_of
from kassa.storage.outbox import QUEUED
from kassa.storage.outbox import RetryLater as RetryLater  # the outbox, re-exported
from kassa.storage.outbox import enqueue as enqueue
from kassa.storage.tables import Job

log = logging.getLogger("kassa.jobs")
_JOBS = table_of(Job)

RUNNING, DONE, DEAD = "running", "done", "dead"
# Jobs marked done: one in its handler's transaction, or the jobs of a batch whose external
# effect went through, together. Built once (every job ends with it): a statement built
# per call costs its construction and cache key, about as much CPU as running it.
_MARK_DONE = (
    update(_JOBS)
    .where(
        _JOBS.c.pk.in_(bindparam("job_pks", expanding=True)),
        _JOBS.c.state == RUNNING,
        _JOBS.c.locked_by == bindparam("worker"),
    )
    .values(
        state=DONE,
        finished_at=bindparam("done_at", type_=_JOBS.c.finished_at.type),
        lease_until=None,
        last_error=None,
    )
    .returning(_JOBS.c.pk)
)
BACKOFF_BASE_S = 2
BACKOFF_CAP_S = 3600


@dataclass(frozen=True, slots=True)
class JobHandler:
    """What runs a kind of job.

    `in_transaction` handlers get the job's own session: their database effects commit
    together with "done", exactly once. The others do external I/O (an HTTP delivery)
    outside any transaction and are at-least-once: one that dies after its effect but
    before "done" runs again, so they must be safe to repeat."""

    fn: Callable[..., None]
    in_transaction: bool = True


def backoff_s(attempts: int, rng: random.Random) -> float:
    """Exponential backoff with jitter: ~2 s, 4 s, 8 s … capped at an hour."""
    ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** max(0, attempts - 1))
    return float(ceiling / 2 + rng.random() * ceiling / 2)


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job leased to one worker: what it needs to run it, read as it was claimed."""

    pk: int
    kind: str
    payload: dict[str, Any]
    attempts: int
    lease_until: datetime


@dataclass(frozen=True, slots=True)
class JobView:
    pk: int
    kind: str
    state: str
    attempts: int
    max_attempts: int
    run_after: datetime
    locked_by: str | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None
    payload: dict[str, Any]

    @classmethod
    def of(cls, row: Job) -> JobView:
        return cls(
            pk=row.pk,
            kind=row.kind,
            state=row.state,
            attempts=row.attempts,
            max_attempts=row.max_attempts,
            run_after=row.run_after,
            locked_by=row.locked_by,
            last_error=row.last_error,
            created_at=row.created_at,
            finished_at=row.finished_at,
            payload=dict(row.payload),
        )


def _log_job(
    pk: int, kind: str, attempt: int, started: float, state: str, error: str | None = None
) -> None:
    """One line per job run: `job done kind=... id=... attempt=... ms=...`; a failure says
    whether it will be retried (`outcome=retry`) or was dead-lettered (`outcome=dead`)."""
    ms = round((time.monotonic() - started) * 1000)
    outcome = "done" if state == DONE else "retry" if state == QUEUED else state
    # the same facts as fields, for JSON logs (KASSA_LOG_FORMAT=json, kassa.logs)
    fields = {"job_kind": kind, "job_id": pk, "attempt": attempt, "ms": ms, "outcome": outcome}
    if state == DONE:
        log.info(
            "job done kind=%s id=%s attempt=%s ms=%s outcome=done",
            kind,
            pk,
            attempt,
            ms,
            extra=fields,
        )
    else:  # a retry is routine (INFO); a dead-lettered job needs someone (WARNING)
        log.log(
            logging.WARNING if state == DEAD else logging.INFO,
            "job failed kind=%s id=%s attempt=%s ms=%s outcome=%s error=%s",
            kind,
            pk,
            attempt,
            ms,
            outcome,
            error,
            extra={**fields, "error": error},
        )


class JobQueue:
    def __init__(
        self, db: Database, clock: Clock, *, lease_s: int = 60, rng: random.Random | None = None
    ) -> None:
        self._db = db
        self._clock = clock
        self._lease = timedelta(seconds=lease_s)
        self._rng = rng or random.Random()

    def enqueue(self, kind: str, payload: dict[str, Any], **options: Any) -> None:
        try:
            with self._db.transaction() as session:
                enqueue(session, kind, payload, self._clock(), **options)
        except IntegrityError:
            if options.get("dedupe_key") is None:
                raise  # a duplicate dedupe key means the job is already there

    def claim(
        self, worker: str, limit: int = 10, kinds: set[str] | None = None
    ) -> list[ClaimedJob]:
        """Lease up to `limit` due jobs to `worker`, oldest due first, in one statement
        (an UPDATE of the rows a locking subquery picks, returning what `run` needs).

        Due: queued and its time has come, or running on a lease that ran out (its worker
        died; such a job was due when it was claimed, so `run_after <= now` holds for it
        too). The condition is written so that the partial index `ix_jobs_due` (the
        queued and running rows only, in `run_after, pk` order) serves it as an ordered
        range scan that stops at `limit`: every job's state changes three times, and a
        scan over the whole history of those changes (an index on `state` keeps the dead
        entries of each until VACUUM) made each poll cost more as the table aged."""
        now = self._clock()
        due = (
            select(_JOBS.c.pk)
            .where(
                _JOBS.c.state.in_((QUEUED, RUNNING)),
                _JOBS.c.run_after <= now,
                or_(_JOBS.c.state == QUEUED, _JOBS.c.lease_until < now),
            )
            .order_by(_JOBS.c.run_after, _JOBS.c.pk)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        if kinds is not None:
            due = due.where(_JOBS.c.kind.in_(sorted(kinds)))
        with self._db.autocommit() as session:  # one statement
            rows = list(
                session.execute(
                    update(_JOBS)
                    .where(_JOBS.c.pk.in_(due.scalar_subquery()))
                    .values(
                        state=RUNNING,
                        locked_by=worker,
                        lease_until=now + self._lease,
                        attempts=_JOBS.c.attempts + 1,
                    )
                    .returning(
                        _JOBS.c.pk,
                        _JOBS.c.kind,
                        _JOBS.c.payload,
                        _JOBS.c.attempts,
                        _JOBS.c.run_after,
                    )
                ).all()
            )
        rows.sort(key=lambda row: (row.run_after, row.pk))
        lease_until = now + self._lease
        return [
            ClaimedJob(int(r.pk), str(r.kind), dict(r.payload), int(r.attempts), lease_until)
            for r in rows
        ]

    def run_batch(
        self, jobs: list[ClaimedJob], worker: str, handlers: dict[str, JobHandler]
    ) -> dict[int, str]:
        """Run a claimed batch, in order; returns each job's new state by its pk.

        As `run`, except that the jobs whose external effect went through (handlers not
        `in_transaction`) are marked done together, in one statement after the batch
        instead of one transaction each. Until then they stay `running` under this
        worker's lease; if the process dies first they run again, which such jobs must
        bear anyway (they are at-least-once)."""
        states: dict[int, str] = {}
        effected: list[tuple[ClaimedJob, float]] = []
        for job in jobs:
            handler = handlers[job.kind]
            if handler.in_transaction:
                states[job.pk] = self.run(job, worker, handler)
                continue
            started = time.monotonic()
            state = self._effect_outside(job, worker, handler, started)
            if state is None:
                effected.append((job, started))
            else:
                states[job.pk] = state
        states.update(self._mark_all_done(effected, worker))
        return states

    def _mark_all_done(
        self, effected: list[tuple[ClaimedJob, float]], worker: str
    ) -> dict[int, str]:
        if not effected:
            return {}
        with self._db.autocommit() as session:  # one statement
            marked = self._mark_all_in(session, [job.pk for job, _ in effected], worker)
        states: dict[int, str] = {}
        for job, started in effected:
            states[job.pk] = DONE if job.pk in marked else "lost"
            if job.pk in marked:
                _log_job(job.pk, job.kind, job.attempts, started, DONE)
        return states

    def run(self, job: ClaimedJob, worker: str, handler: JobHandler) -> str:
        """Run one claimed job; returns its new state. Logs one line per job it finishes or
        fails: kind, id, attempt, duration and outcome (WARNING when dead-lettered)."""
        started = time.monotonic()
        if not handler.in_transaction:
            state = self._effect_outside(job, worker, handler, started)
            if state is not None:
                return state
            return self._mark_all_done([(job, started)], worker)[job.pk]
        try:
            with self._db.transaction() as session:
                # Marked done first, in the handler's transaction: the UPDATE takes the
                # job's row lock and proves the lease is still ours (another worker that
                # took the job over after the lease ran out has its own name in
                # `locked_by`). If the handler fails, the mark rolls back with its effects.
                if not self._mark_done(session, job.pk, worker):
                    return "lost"
                handler.fn(session, job.payload)
        except Exception as exc:  # the handler's transaction rolled back
            return self._failed(job.pk, worker, exc, started)
        _log_job(job.pk, job.kind, job.attempts, started, DONE)
        return DONE

    def _mark_done(self, session: Session, pk: int, worker: str) -> bool:
        return pk in self._mark_all_in(session, [pk], worker)

    def _mark_all_in(self, session: Session, pks: list[int], worker: str) -> set[int]:
        """Mark `pks` done where this worker's lease still holds them; returns those."""
        return set(
            session.scalars(
                _MARK_DONE, {"job_pks": pks, "worker": worker, "done_at": self._clock()}
            )
        )

    def _effect_outside(
        self, job: ClaimedJob, worker: str, handler: JobHandler, started: float
    ) -> str | None:
        """External I/O, outside any transaction; None when it went through (the job is
        still to be marked done), else the job's new state. A job still early in its lease
        runs at once; one whose lease may have run out while the batch before it ran
        (another worker may have it by now) first checks that it is still ours."""
        if self._clock() >= job.lease_until - self._lease / 2 and not self._still_ours(
            job.pk, worker
        ):
            return "lost"
        try:
            handler.fn(job.payload)
        except Exception as exc:
            return self._failed(job.pk, worker, exc, started)
        return None

    def _still_ours(self, pk: int, worker: str) -> bool:
        with self._db.transaction(read_only=True) as session:
            return (
                session.execute(
                    select(_JOBS.c.pk).where(
                        _JOBS.c.pk == pk, _JOBS.c.state == RUNNING, _JOBS.c.locked_by == worker
                    )
                ).first()
                is not None
            )

    def _failed(self, pk: int, worker: str, exc: Exception, started: float) -> str:
        now = self._clock()
        with self._db.transaction() as session:
            job = session.scalar(
                select(Job).where(Job.pk == pk, Job.locked_by == worker).with_for_update()
            )
            if job is None or job.state != RUNNING:
                return "lost"
            job.last_error = f"{type(exc).__name__}: {exc}"[:2000]
            job.lease_until = None
            job.locked_by = None
            if job.attempts >= job.max_attempts:
                job.state = DEAD
                job.finished_at = now
            else:
                job.state = QUEUED
                job.run_after = now + timedelta(seconds=backoff_s(job.attempts, self._rng))
            kind, attempt, state, error = job.kind, job.attempts, job.state, job.last_error
        _log_job(pk, kind, attempt, started, state, error)
        return state

    def list(self, state: str | None = None, limit: int = 50) -> list[JobView]:
        with self._db.transaction(read_only=True) as session:
            stmt = select(Job).order_by(Job.pk.desc()).limit(limit)
            if state:
                stmt = stmt.where(Job.state == state)
            return [JobView.of(row) for row in session.scalars(stmt)]

    def counts(self) -> dict[str, int]:
        with self._db.transaction(read_only=True) as session:
            return {
                str(state): int(n)
                for state, n in session.execute(select(Job.state, func.count()).group_by(Job.state))
            }

    def retry_dead(self, pk: int | None = None) -> int:
        """Put dead jobs (one, or all) back in the queue with fresh attempts."""
        with self._db.transaction() as session:
            stmt = update(Job).where(Job.state == DEAD)
            if pk is not None:
                stmt = stmt.where(Job.pk == pk)
            result = session.execute(
                stmt.values(state=QUEUED, attempts=0, run_after=self._clock(), finished_at=None)
            )
            return int(getattr(result, "rowcount", 0))
