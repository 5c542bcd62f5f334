"""Recording provider calls (attempts) of payments and refund parts.

An attempt is numbered when it is written, in the order attempts are recorded, not by the
orchestrator that made it: the request and a resume job may call the provider for the same
payment or refund part at the same time, and a number taken twice must not fail either of
them (the unique constraint elects one; the other takes the next number).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from kassa.services.orchestrator import Attempt
from kassa.storage.database import Database
from kassa.storage.tables import PaymentAttempt, RefundAttempt

_TRIES = 5


def record_attempt(
    db: Database,
    model: type[PaymentAttempt] | type[RefundAttempt],
    owner: dict[str, str],
    provider: str,
    attempt: Attempt,
) -> None:
    """Insert `attempt` for the payment or part named by `owner` ({column: id})."""
    ((column_name, owner_id),) = owner.items()
    column: Any = getattr(model, column_name)
    for _ in range(_TRIES):
        try:
            with db.transaction() as session:
                last = session.scalar(select(func.max(model.number)).where(column == owner_id))
                session.add(
                    model(
                        **owner,
                        provider=provider,
                        number=(last or 0) + 1,
                        operation=attempt.operation,
                        started_at=attempt.started_at,
                        duration_ms=attempt.duration_ms,
                        outcome=attempt.outcome.value,
                        error_type=attempt.error_type,
                        code=attempt.code,
                        decline_code=attempt.decline_code,
                        retry_delay_ms=attempt.retry_delay_ms,
                        gateway_failure=attempt.gateway_failure,
                    )
                )
            return
        except IntegrityError:
            continue  # another caller took that number: take the next one
