"""The outbox primitive: a job row added inside the transaction of the change causing it.

A job exists if and only if its cause committed. The queue that claims and runs jobs is
`kassa.services.jobs`; this module is what any layer that records a change (services,
the sandbox provider) needs to enqueue work, without depending on the services.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert
from sqlalchemy.orm import Session

from kassa.storage.database import table_of
from kassa.storage.tables import Job

_JOBS = table_of(Job)  # Core statements: no unit of work on every state change

QUEUED = "queued"
DEFAULT_MAX_ATTEMPTS = 12


class RetryLater(Exception):
    """A job that cannot run yet (e.g. an event about a payment kassa has not seen)."""


def retire(session: Session, dedupe_key: str) -> None:
    """Drop the job enqueued under `dedupe_key` if no worker has claimed it yet (a guard
    that is no longer needed); a claimed one runs and finds nothing to do."""
    session.execute(delete(_JOBS).where(_JOBS.c.dedupe_key == dedupe_key, _JOBS.c.state == QUEUED))


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
    """Add a job inside the caller's transaction (a Core insert, executed at once: a job
    is never read back by the transaction that adds it)."""
    session.execute(
        insert(_JOBS),
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
