"""The first payments on a fresh database all find no `gateway_states` row for their
provider and create it at once: exactly one insert may win, and every other caller must
go on with that row instead of failing on the unique key (a 500 to a paying customer).
"""

from __future__ import annotations

import threading

from sqlalchemy import delete, func, select

from kassa.bootstrap import Kassa
from kassa.domain.payments import GatewayState
from kassa.services.gateway_health import GatewayHealth, HealthReport
from kassa.storage.tables import GatewayStateRow

THREADS = 16
ROUNDS = 5


def _race(kassa: Kassa, provider: str) -> tuple[list[HealthReport], list[BaseException]]:
    health = GatewayHealth(kassa.db, kassa.clock, kassa.gateway_health.thresholds, cache_s=0)
    barrier = threading.Barrier(THREADS)
    reports: list[HealthReport] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def one() -> None:
        barrier.wait()
        try:
            report = health.report(provider)
        except BaseException as exc:  # collected and asserted below
            with lock:
                errors.append(exc)
        else:
            with lock:
                reports.append(report)

    threads = [threading.Thread(target=one) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return reports, errors


def test_concurrent_first_health_reports_create_one_row_and_never_fail(kassa: Kassa) -> None:
    for round_ in range(ROUNDS):
        with kassa.db.transaction() as session:
            session.execute(delete(GatewayStateRow))  # a fresh table, every round
        reports, errors = _race(kassa, "mock")
        assert not errors, f"round {round_}: {errors[0]!r}"
        assert len(reports) == THREADS
        assert {r.state for r in reports} == {GatewayState.HEALTHY}
        with kassa.db.transaction(read_only=True) as session:
            rows = session.scalar(
                select(func.count())
                .select_from(GatewayStateRow)
                .where(GatewayStateRow.provider == "mock")
            )
        assert rows == 1
