"""The outbox primitive: a job row added inside the transaction of the change causing it.

A job exists if and only if its cause committed. The queue that claims and runs jobs is
`kassa.services.jobs`; this module is what any layer that records a change (services,
the sandbox provider) needs to enqueue work, without depending on the services.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, literal, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Insert

from kassa.storage.database import table_of
from kassa.storage.deferred import defer, defer_update, deferred_rows_of, write_now
from kassa.storage.prebuilt import kept
from kassa.storage.tables import Job

_JOBS = table_of(Job)  # Core statements: no unit of work on every state change

QUEUED = "queued"
DEFAULT_MAX_ATTEMPTS = 12


class RetryLater(Exception):
    """A job that cannot run yet (e.g. an event about a payment kassa has not seen)."""


_RETIRE = delete(_JOBS).where(
    _JOBS.c.dedupe_key == bindparam("retired_key"), _JOBS.c.state == QUEUED
)  # built once: every payment's settlement retires its guard


def retire(session: Session, dedupe_key: str) -> None:
    """Drop the job enqueued under `dedupe_key` if no worker has claimed it by the time
    this transaction commits (a guard that is no longer needed); a claimed one runs and
    finds nothing to do. The DELETE goes with the transaction's deferred writes (on
    PostgreSQL in their one statement), unless jobs of this very transaction wait for the
    commit: the guard may be one of them, so they are written and it dropped at once."""
    if deferred_rows_of(session, Job):
        write_now(session, Job)
        session.execute(_RETIRE, {"retired_key": dedupe_key})
        return
    defer_update(session, _RETIRE, {"retired_key": dedupe_key})


def enqueue(
    session: Session,
    kind: str,
    payload: dict[str, Any],
    now: datetime,
    *,
    run_after: datetime | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    dedupe_key: str | None = None,
) -> None:
    """Add a job inside the caller's transaction. It is written at commit, with the
    transaction's other deferred writes (`storage.deferred`): a job is never read back by
    the transaction that adds it (`retire` writes any first)."""
    defer(
        session,
        Job,
        {
            "kind": kind,
            "payload": payload,
            "state": QUEUED,
            "attempts": 0,
            "max_attempts": max_attempts,
            "run_after": run_after or now,
            "dedupe_key": dedupe_key,
            "created_at": now,
        },
    )


def insert_and_enqueue(
    session: Session,
    insert_returning_pk: Insert,
    params: dict[str, Any],
    kind: str,
    payload_key: str,
    now: datetime,
    *,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    settled_as_stored: bool = False,
) -> bool:
    """Run `insert_returning_pk` (an INSERT ... ON CONFLICT DO NOTHING RETURNING pk, built
    once with bind parameters, executed with `params`) and, if it inserted, enqueue a
    `kind` job whose payload is {payload_key: that pk}; returns whether it inserted.

    `settled_as_stored`: the insert returns a second column after the key, set when the
    row was dealt with as it was stored (nothing left for a job): such a row gets none.

    On PostgreSQL one statement: the insert as a CTE feeding the job's INSERT ... SELECT
    (a webhook's acknowledgement is a round trip shorter). That statement is built once
    per insert statement and kind and kept: building a compound statement and its cache
    key on every call cost as much CPU as executing it. On SQLite, which has no
    data-modifying CTEs, the two statements."""
    if session.get_bind().dialect.name != "postgresql":
        row = session.execute(insert_returning_pk, params).first()
        if row is None:
            return False
        if not (settled_as_stored and row[1] is not None):
            enqueue(session, kind, {payload_key: row[0]}, now, max_attempts=max_attempts)
        return True
    # Callers pass an insert they built once (webhooks._store_event), so one kept
    # statement per such use.
    shape = ("with_job", insert_returning_pk, kind, payload_key, max_attempts, settled_as_stored)
    statement = kept(
        shape,
        lambda: _with_job(insert_returning_pk, kind, payload_key, max_attempts, settled_as_stored),
    )
    return session.execute(statement, {**params, _JOB_NOW: now}).first() is not None


_JOB_NOW = "outbox_job_now"


def _with_job(
    insert_returning_pk: Insert, kind: str, payload_key: str, max_attempts: int, settled: bool
) -> Any:
    inserted = insert_returning_pk.cte("inserted")
    pk = inserted.c[0]
    now = bindparam(_JOB_NOW, type_=_JOBS.c.run_after.type)
    job = select(
        literal(kind),
        func.json_build_object(literal(payload_key), pk),
        literal(QUEUED),
        literal(0),
        literal(max_attempts),
        now,
        now,
    )
    columns = ["kind", "payload", "state", "attempts", "max_attempts", "run_after", "created_at"]
    if not settled:  # a row per inserted row: the job's RETURNING tells the caller
        return insert(_JOBS).from_select(columns, job).returning(_JOBS.c.pk)
    # a job only for a row not settled as stored; the inserted row itself is the answer
    enqueued = insert(_JOBS).from_select(columns, job.where(inserted.c[1].is_(None)))
    return select(pk).add_cte(enqueued.cte("enqueued"))
