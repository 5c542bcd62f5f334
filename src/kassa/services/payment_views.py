"""A payment as the API shows it (`PaymentView`, with its provider attempts), built where the
payment is read and where its status changes.

Its own module so that settlement, the one writer of a payment's status, can put the
payment as the API returns it into the event that reports the change (`payment.succeeded`
and the others, `services/events.py`) without importing the payments service, which
imports settlement.

The attempts: a pay request writes its attempts in the transaction that settles the
payment and already holds them (`known_attempts`), so the event costs no read there;
a change that arrives later (a provider webhook, a resume) reads them once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from kassa.services.orchestrator import Attempt
from kassa.storage.deferred import write_now
from kassa.storage.tables import Payment, PaymentAttempt

_KNOWN = "kassa.payment_attempts"
_ATTEMPTS_OF = (
    select(PaymentAttempt)
    .where(PaymentAttempt.payment_id == bindparam("payment_id"))
    .order_by(PaymentAttempt.number)
)


@dataclass(frozen=True, slots=True)
class AttemptView:
    number: int
    operation: str
    started_at: datetime
    duration_ms: int
    outcome: str
    error_type: str | None
    code: str | None
    decline_code: str | None
    retry_delay_ms: int | None


@dataclass(frozen=True, slots=True)
class PaymentView:
    id: str
    order: str | None
    top_up_customer: str | None
    provider: str
    provider_payment_id: str | None
    status: str
    amount: int
    currency: str
    client_secret: str | None
    next_action: dict[str, Any] | None
    failure: dict[str, Any] | None
    attempts: tuple[AttemptView, ...]
    retry_count: int
    recovered_by_retry: bool
    no_retry_reason: str | None
    orchestration_ms: int | None
    created_at: datetime
    succeeded_at: datetime | None


def attempt_view(number: int, attempt: Attempt | PaymentAttempt) -> AttemptView:
    """One attempt as answered: read back from its row, or the one just written from it."""
    outcome = attempt.outcome
    return AttemptView(
        number=number,
        operation=attempt.operation,
        started_at=attempt.started_at.astimezone(UTC),
        duration_ms=attempt.duration_ms,
        outcome=outcome if isinstance(outcome, str) else outcome.value,
        error_type=attempt.error_type,
        code=attempt.code,
        decline_code=attempt.decline_code,
        retry_delay_ms=attempt.retry_delay_ms,
    )


def payment_view(row: Payment, attempts: Sequence[AttemptView]) -> PaymentView:
    return PaymentView(
        id=row.id,
        order=row.order_id,
        top_up_customer=row.top_up_customer_id,
        provider=row.provider,
        provider_payment_id=row.provider_payment_id,
        status=row.status,
        amount=row.amount,
        currency=row.currency,
        client_secret=row.client_secret,
        next_action=row.next_action,
        failure=row.failure,
        attempts=tuple(attempts),
        retry_count=row.retry_count,
        recovered_by_retry=row.recovered_by_retry,
        no_retry_reason=row.no_retry_reason,
        orchestration_ms=row.orchestration_ms,
        created_at=row.created_at,
        succeeded_at=row.succeeded_at,
    )


def known_attempts(session: Session, payment_id: str, attempts: Sequence[AttemptView]) -> None:
    """Tell this transaction that `attempts` are all of the payment's attempts (the caller
    wrote them, and holds the payment's lock), so its view needs no read of them."""
    session.info.setdefault(_KNOWN, {})[payment_id] = tuple(attempts)


def attempts_of(session: Session, payment_id: str) -> tuple[AttemptView, ...]:
    """The payment's attempts: as this transaction knows them, else read (in number order)
    and known from then on, so that a settlement's event and its answer read them once.

    Safe to keep because every writer of a payment's attempts holds the payment's lock
    and writes them before the views it builds (`record_attempts_in`, in the transaction
    that settles), or in a transaction of its own (`record_attempt`)."""
    known: dict[str, tuple[AttemptView, ...]] = session.info.setdefault(_KNOWN, {})
    if payment_id not in known:
        write_now(session, PaymentAttempt)  # those written in this transaction, at commit
        rows = session.scalars(_ATTEMPTS_OF, {"payment_id": payment_id})
        known[payment_id] = tuple(attempt_view(a.number, a) for a in rows)
    return known[payment_id]


def current_view(session: Session, payment: Payment) -> PaymentView:
    """The view of a payment this session holds, as it stands in the transaction now."""
    return payment_view(payment, attempts_of(session, payment.id))
