"""Recording provider calls (attempts) of payments and refund parts.

An attempt is numbered when it is written, in the order attempts are recorded, not by the
orchestrator that made it: the request and a resume job may call the provider for the same
payment or refund part at the same time, and a number taken twice must not fail either of
them (the unique constraint elects one; the other takes the next number).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kassa.services.orchestrator import Attempt
from kassa.storage.database import Database, write_only_insert
from kassa.storage.deferred import defer, write_now
from kassa.storage.tables import PaymentAttempt, RefundAttempt

_TRIES = 5
# The owner's last attempt number, per owner column, built once (every settlement asks).
_LAST_NUMBER = {
    (model, column): select(func.max(model.number)).where(
        getattr(model, column) == bindparam("owner_id")
    )
    for model, column in ((PaymentAttempt, "payment_id"), (RefundAttempt, "refund_id"))
}


def _row(owner: dict[str, str], provider: str, number: int, attempt: Attempt) -> dict[str, Any]:
    return {
        **owner,
        "provider": provider,
        "number": number,
        "operation": attempt.operation,
        "started_at": attempt.started_at,
        "duration_ms": attempt.duration_ms,
        "outcome": attempt.outcome.value,
        "error_type": attempt.error_type,
        "code": attempt.code,
        "decline_code": attempt.decline_code,
        "retry_delay_ms": attempt.retry_delay_ms,
        "gateway_failure": attempt.gateway_failure,
    }


def record_attempts_in(
    session: Session,
    model: type[PaymentAttempt] | type[RefundAttempt],
    owner: dict[str, str],
    provider: str,
    attempts: Sequence[Attempt],
) -> int | None:
    """Insert `attempts`, in order, inside the caller's transaction, which must hold the
    owner's row lock (a payment settling): every other writer of the owner's attempts
    takes that lock first (`record_attempt`'s `lock`), so the numbers cannot collide.

    Returns how many attempts the owner had before these (None when there were none to
    insert, and so nothing was read): 0 tells the caller that `attempts` are all of them."""
    if not attempts:
        return None
    ((column_name, owner_id),) = owner.items()
    write_now(session, model)  # attempts deferred earlier in this transaction count
    last = session.scalar(_LAST_NUMBER[model, column_name], {"owner_id": owner_id}) or 0
    for i, attempt in enumerate(attempts, start=1):
        # At commit, with the transaction's other deferred writes (`storage.deferred`; on
        # PostgreSQL one statement): a reader of them in this transaction (the payment's
        # view, `payment_views.attempts_of`) writes them first.
        defer(session, model, _row(owner, provider, last + i, attempt))
    return int(last)


def record_attempt(
    db: Database,
    model: type[PaymentAttempt] | type[RefundAttempt],
    owner: dict[str, str],
    provider: str,
    attempt: Attempt,
    *,
    lock: Callable[[Session], object] | None = None,
) -> None:
    """Insert `attempt` for the payment or part named by `owner` ({column: id}), in a
    transaction of its own that first runs `lock` (the owner's row lock, where others
    number attempts under it: see `record_attempts_in`)."""
    ((column_name, owner_id),) = owner.items()
    for _ in range(_TRIES):
        try:
            with db.transaction() as session:
                if lock is not None:
                    lock(session)
                last = session.scalar(_LAST_NUMBER[model, column_name], {"owner_id": owner_id})
                session.execute(
                    write_only_insert(model), _row(owner, provider, (last or 0) + 1, attempt)
                )
            return
        except IntegrityError:
            continue  # another caller took that number: take the next one
