"""`storage.deferred`: writes made at commit (on PostgreSQL all in one statement, on SQLite
one execution per table), or not at all."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import bindparam, func, select, update

from kassa.bootstrap import Kassa
from kassa.services import audit, events
from kassa.services.context import RequestContext
from kassa.storage.deferred import defer_update, pending, write_now
from kassa.storage.outbox import enqueue, retire
from kassa.storage.tables import AuditRecord, Event, Job, Product
from tests import builders
from tests.conftest import Keys
from tests.support import statements_sent

AT = datetime(2026, 12, 2, tzinfo=UTC)


def audit_inserts(seen: list[str]) -> list[str]:
    return [s for s in seen if "INSERT INTO audit_log" in s]


def stored(kassa: Kassa) -> list[str]:
    with kassa.db.transaction(read_only=True) as s:
        return list(s.scalars(select(AuditRecord.subject_id).order_by(AuditRecord.pk)))


# An update for the tests: a job's last error (audit records are append-only)
NOTE = update(Job).where(Job.pk == bindparam("job_pk")).values(last_error=bindparam("note"))


def a_job(kassa: Kassa) -> int:
    with kassa.db.transaction() as session:
        enqueue(session, "probe.target", {}, AT)
    with kassa.db.transaction(read_only=True) as s:
        return int(s.scalar(select(Job.pk).where(Job.kind == "probe.target")) or 0)


def note_of(kassa: Kassa, pk: int) -> str | None:
    with kassa.db.transaction(read_only=True) as s:
        return s.scalar(select(Job.last_error).where(Job.pk == pk))


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


def test_a_commit_s_writes_of_several_tables_and_an_update_are_one_statement_on_postgresql(
    kassa: Kassa, system: RequestContext, is_postgres: bool
) -> None:
    pk = a_job(kassa)
    with statements_sent(kassa) as seen, kassa.db.transaction() as session:
        for n in range(2):
            audit.record(session, system, at=AT, action="probe", subject=f"s{n}")
        events.record(session, events.ORDER_CREATED, {"id": "ord_x", "object": "order"}, AT)
        enqueue(session, "probe.job", {"n": 1}, AT)
        defer_update(session, NOTE, {"job_pk": pk, "note": "renamed"})
        assert pending(session) == 5 and seen == []
    writes = [s for s in seen if s.split()[0] in ("INSERT", "UPDATE", "WITH")]
    assert len(writes) == (1 if is_postgres else 4)
    assert stored(kassa) == ["s0", "s1"] and note_of(kassa, pk) == "renamed"
    with kassa.db.transaction(read_only=True) as s:
        assert s.scalar(select(func.count()).select_from(Event)) == 1
        assert s.scalar(select(Job.payload).where(Job.kind == "probe.job")) == {"n": 1}


def test_a_second_update_of_the_same_statement_runs_after_the_first(
    kassa: Kassa, system: RequestContext
) -> None:
    pk = a_job(kassa)
    with kassa.db.transaction() as session:
        defer_update(session, NOTE, {"job_pk": pk, "note": "first"})
        defer_update(session, NOTE, {"job_pk": pk, "note": "last"})
    assert note_of(kassa, pk) == "last"


def test_a_rolled_back_transaction_runs_none_of_its_updates(
    kassa: Kassa,
) -> None:
    pk = a_job(kassa)

    def fail() -> None:
        with kassa.db.transaction() as session:
            defer_update(session, NOTE, {"job_pk": pk, "note": "lost"})
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError):
        fail()
    assert note_of(kassa, pk) is None


def test_a_job_enqueued_and_retired_in_one_transaction_is_gone(kassa: Kassa) -> None:
    """`retire` deletes by the job's key, so the job deferred before it is written first."""
    with kassa.db.transaction() as session:
        enqueue(session, "probe.guard", {}, AT, dedupe_key="guard:1")
        retire(session, "guard:1")
    with kassa.db.transaction(read_only=True) as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 0


def test_a_guard_of_an_earlier_transaction_is_retired_at_commit_unless_claimed(
    kassa: Kassa, database_url: str
) -> None:
    """A guard enqueued earlier is dropped by the commit (on PostgreSQL in the commit's
    one statement, with the transaction's other writes); one a worker claimed meanwhile
    stays, to run and find nothing to do."""
    with kassa.db.transaction() as session:
        enqueue(session, "probe.guard", {}, AT, dedupe_key="guard:queued")
        enqueue(session, "probe.guard", {}, AT, dedupe_key="guard:claimed")
    with statements_sent(kassa) as seen, kassa.db.transaction() as session:
        retire(session, "guard:queued")
        audit.record(session, RequestContext.system("t"), at=AT, action="probe", subject="s")
        assert not [s for s in seen if "DELETE" in s]  # nothing yet
        assert pending(session) == 2
        # a worker claims the other guard now (as `JobQueue.claim` would)
        with kassa.db.transaction() as other:
            other.execute(
                update(Job).where(Job.dedupe_key == "guard:claimed").values(state="running")
            )
        retire(session, "guard:claimed")  # a second retirement runs the first at once
    if "postgres" in database_url:
        [merged] = [s for s in seen if "DELETE FROM jobs" in s and "audit_log" in s]
        assert "INSERT INTO audit_log" in merged
    with kassa.db.transaction(read_only=True) as s:
        left = s.execute(select(Job.dedupe_key, Job.state)).all()
    assert left == [("guard:claimed", "running")]
    assert stored(kassa) == ["s"]


def test_write_now_makes_a_table_s_rows_visible_in_the_transaction(
    kassa: Kassa, system: RequestContext
) -> None:
    with kassa.db.transaction() as session:
        audit.record(session, system, at=AT, action="probe", subject="early")
        events.record(session, events.ORDER_CREATED, {"id": "ord_x", "object": "order"}, AT)
        write_now(session, AuditRecord)
        assert session.scalar(select(func.count()).select_from(AuditRecord)) == 1
        assert pending(session) == 1  # the event still waits for the commit
    assert stored(kassa) == ["early"]


def test_an_order_of_many_lines_and_unique_items_goes_in_parent_first(
    kassa: Kassa, client: TestClient, keys: Keys
) -> None:
    """Ten lines are more than one commit statement takes for a table, so each table goes
    in by its own executemany, the order before its lines (their foreign key); a unique
    item's reservation names the order deferred with it."""
    skus = [f"SKU{n}" for n in range(10)]
    for sku in skus:
        builders.make_product(client, keys, sku, **({"unique": True} if sku == "SKU0" else {}))
    placed = builders.order(client, keys, lines=[(sku, 1) for sku in skus])
    assert [line["sku"] for line in placed["lines"]] == skus
    fetched = client.get(f"/v1/orders/{placed['id']}", headers=keys.headers("storefront"))
    assert fetched.json()["lines"] == placed["lines"]
    with kassa.db.transaction(read_only=True) as s:
        reserved = s.scalar(select(Product.reserved_by_order).where(Product.sku == "SKU0"))
    assert reserved == placed["id"]
