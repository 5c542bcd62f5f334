"""Payment analytics over a time window: attempts, recoveries, failure types, timing."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select

from kassa.domain.errors import FieldProblem, invalid
from kassa.domain.payments import PaymentStatus
from kassa.services.context import Clock
from kassa.storage.database import Database
from kassa.storage.tables import Payment, PaymentAttempt

_WINDOW = re.compile(r"^(\d{1,7})([smhd]?)$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_WINDOW_S = 366 * 86400


def parse_window(raw: str | None, default_s: int = 86400) -> int:
    """`3600`, `90s`, `15m`, `24h`, `7d` -> seconds."""
    if raw is None or raw == "":
        return default_s
    match = _WINDOW.match(raw.strip())
    seconds = int(match.group(1)) * _UNIT_S[match.group(2)] if match else 0
    if not 0 < seconds <= MAX_WINDOW_S:
        raise invalid(
            "validation_error",
            "window is a duration like 3600, 15m, 24h or 7d (at most 366d)",
            FieldProblem(("query", "window"), "invalid duration"),
        )
    return seconds


@dataclass(frozen=True, slots=True)
class PaymentAnalytics:
    window_s: int
    attempts: int
    payments: int
    succeeded: int
    needed_retry: int
    recovered_by_retry: int
    recovered_pct: float
    avg_retry_delay_ms: float
    failure_types: dict[str, int]
    avg_orchestration_ms: float


class Analytics:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def payments(self, window_s: int) -> PaymentAnalytics:
        since = self._clock() - timedelta(seconds=window_s)
        with self._db.transaction(read_only=True) as session:
            attempts = (
                session.scalar(select(func.count()).where(PaymentAttempt.started_at >= since)) or 0
            )
            avg_delay = session.scalar(
                select(func.avg(PaymentAttempt.retry_delay_ms)).where(
                    PaymentAttempt.started_at >= since, PaymentAttempt.retry_delay_ms.is_not(None)
                )
            )
            failure_types = {
                str(kind): int(count)
                for kind, count in session.execute(
                    select(PaymentAttempt.error_type, func.count())
                    .where(
                        PaymentAttempt.started_at >= since, PaymentAttempt.error_type.is_not(None)
                    )
                    .group_by(PaymentAttempt.error_type)
                )
            }
            in_window = Payment.created_at >= since
            payments = session.scalar(select(func.count()).where(in_window)) or 0
            succeeded = (
                session.scalar(
                    select(func.count()).where(in_window, Payment.status == PaymentStatus.SUCCEEDED)
                )
                or 0
            )
            needed_retry = (
                session.scalar(select(func.count()).where(in_window, Payment.retry_count > 0)) or 0
            )
            recovered = (
                session.scalar(
                    select(func.count()).where(in_window, Payment.recovered_by_retry.is_(True))
                )
                or 0
            )
            avg_orchestration = session.scalar(
                select(func.avg(Payment.orchestration_ms)).where(
                    in_window, Payment.orchestration_ms.is_not(None)
                )
            )
        return PaymentAnalytics(
            window_s=window_s,
            attempts=int(attempts),
            payments=int(payments),
            succeeded=int(succeeded),
            needed_retry=int(needed_retry),
            recovered_by_retry=int(recovered),
            recovered_pct=round(100 * recovered / needed_retry, 2) if needed_retry else 0.0,
            avg_retry_delay_ms=round(float(avg_delay or 0), 1),
            failure_types=failure_types,
            avg_orchestration_ms=round(float(avg_orchestration or 0), 1),
        )
