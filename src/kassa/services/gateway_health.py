"""Per-gateway health over a rolling window, derived from recorded attempts.

Because it is computed from the recorded attempts (`payment_attempts` and
`refund_attempts`: a gateway that fails refunds is as unwell as one that fails charges),
every process sees the same health and it survives restarts; the last verdict is kept in
`gateway_states` so the hysteresis (degrade at one failure rate, recover only below a
lower one) holds across processes too.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, union_all

from kassa.domain.payments import (
    GatewayState,
    HealthStats,
    HealthThresholds,
    health_stats,
    next_state,
)
from kassa.services.context import Clock
from kassa.storage.database import Database
from kassa.storage.tables import GatewayStateRow, PaymentAttempt, RefundAttempt
from kassa.storage.upsert import insert_unless_exists


@dataclass(frozen=True, slots=True)
class HealthReport:
    provider: str
    state: GatewayState
    window_s: int
    stats: HealthStats


class GatewayHealth:
    def __init__(
        self, db: Database, clock: Clock, thresholds: HealthThresholds, cache_s: float = 1.0
    ) -> None:
        self._db = db
        self._clock = clock
        self.thresholds = thresholds
        self._cache_s = cache_s
        self._cache: dict[str, tuple[float, HealthReport]] = {}
        self._lock = threading.Lock()

    def report(self, provider: str) -> HealthReport:
        now = self._clock()
        since = now - timedelta(seconds=self.thresholds.window_s)
        with self._db.transaction() as session:
            samples = [
                (duration, failed)
                for duration, failed in session.execute(
                    union_all(
                        *(
                            select(table.duration_ms, table.gateway_failure).where(
                                table.provider == provider, table.started_at >= since
                            )
                            for table in (PaymentAttempt, RefundAttempt)
                        )
                    )
                )
            ]
            stats = health_stats(samples)
            row = session.get(GatewayStateRow, provider, with_for_update=True)
            if row is None:
                # The first reports on a fresh database race to create the row: one
                # insert wins, the others wait for it and then lock the winner's row.
                insert_unless_exists(
                    session,
                    GatewayStateRow,
                    {"provider": provider, "state": GatewayState.HEALTHY.value, "changed_at": now},
                    ["provider"],
                )
                row = session.get(
                    GatewayStateRow, provider, with_for_update=True, populate_existing=True
                )
                assert row is not None
            state = next_state(GatewayState(row.state), stats, self.thresholds)
            if row.state != state.value:
                row.state = state.value
                row.changed_at = now
        report = HealthReport(provider, state, self.thresholds.window_s, stats)
        with self._lock:
            self._cache[provider] = (time.monotonic(), report)
        return report

    def is_degraded(self, provider: str) -> bool:
        """Cached for a second: asked on every failure, so it must stay cheap."""
        with self._lock:
            cached = self._cache.get(provider)
        if cached is not None and time.monotonic() - cached[0] < self._cache_s:
            return cached[1].state is GatewayState.DEGRADED
        return self.report(provider).state is GatewayState.DEGRADED

    def forget_cache(self) -> None:
        with self._lock:
            self._cache.clear()
