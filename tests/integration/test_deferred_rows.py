"""`storage.deferred`: rows written at commit, one execution per table, or not at all."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from kassa.bootstrap import Kassa
from kassa.services import audit
from kassa.services.context import RequestContext
from kassa.storage.deferred import pending
from kassa.storage.tables import AuditRecord
from tests.support import statements_sent

AT = datetime(2026, 12, 2, tzinfo=UTC)


def audit_inserts(seen: list[str]) -> list[str]:
    return [s for s in seen if "INSERT INTO audit_log" in s]


def stored(kassa: Kassa) -> list[str]:
    with kassa.db.transaction(read_only=True) as s:
        return list(s.scalars(select(AuditRecord.subject_id).order_by(AuditRecord.pk)))


def test_a_transaction_s_records_go_in_at_commit_in_one_execution_in_order(
    kassa: Kassa, system: RequestContext
) -> None:
    with statements_sent(kassa) as seen, kassa.db.transaction() as session:
        for n in range(3):
            audit.record(session, system, at=AT, action="probe", subject=f"s{n}", after={"n": n})
        assert pending(session) == 3 and audit_inserts(seen) == []  # nothing written yet
    assert len(audit_inserts(seen)) == 1
    assert stored(kassa) == ["s0", "s1", "s2"]
    with kassa.db.transaction(read_only=True) as s:
        assert s.scalar(select(AuditRecord.after).where(AuditRecord.subject_id == "s2")) == {"n": 2}


def test_a_rolled_back_transaction_writes_none_and_leaves_nothing_for_the_next(
    kassa: Kassa, system: RequestContext
) -> None:
    def fail() -> None:
        with kassa.db.transaction() as session:
            audit.record(session, system, at=AT, action="probe", subject="lost")
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError):
        fail()
    with kassa.db.transaction() as session:  # a new transaction carries no leftovers
        assert pending(session) == 0
        audit.record(session, system, at=AT, action="probe", subject="kept")
    assert stored(kassa) == ["kept"]


def test_many_rows_are_all_written_in_one_execution(kassa: Kassa, system: RequestContext) -> None:
    with statements_sent(kassa) as seen, kassa.db.transaction() as session:
        for n in range(120):
            audit.record(session, system, at=AT, action="probe", subject=f"s{n}")
    assert len(audit_inserts(seen)) == 1  # one executemany
    with kassa.db.transaction(read_only=True) as s:
        assert s.scalar(select(func.count()).select_from(AuditRecord)) == 120
