"""A worker's batch: jobs with an external effect are marked done together, afterwards."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import event, select, update

from kassa.bootstrap import Kassa
from kassa.services.jobs import JobHandler
from kassa.storage.tables import Job
from kassa.worker import Worker


def _states(kassa: Kassa) -> dict[int, str]:
    with kassa.db.transaction(read_only=True) as s:
        return {int(pk): str(state) for pk, state in s.execute(select(Job.pk, Job.state))}


def test_a_batch_of_external_effects_is_marked_done_in_one_statement(
    kassa: Kassa, caplog: pytest.LogCaptureFixture
) -> None:
    sent: list[object] = []

    def deliver(payload: dict[str, object]) -> None:
        sent.append(payload["n"])

    def fails(payload: dict[str, object]) -> None:
        raise RuntimeError("the receiver is down")

    for n in range(3):
        kassa.jobs.enqueue("test.deliver", {"n": n})
    kassa.jobs.enqueue("test.fails", {})
    handlers = {
        "test.deliver": JobHandler(deliver, in_transaction=False),
        "test.fails": JobHandler(fails, in_transaction=False),
    }
    marks: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.startswith("UPDATE jobs SET state") and "finished_at" in statement:
            marks.append(statement)

    event.listen(kassa.db.engine, "before_cursor_execute", note)
    try:
        with caplog.at_level(logging.INFO, logger="kassa.jobs"):
            assert Worker(kassa, name="w", handlers=handlers).run_once() == 4
    finally:
        event.remove(kassa.db.engine, "before_cursor_execute", note)
    assert sent == [0, 1, 2]
    assert len(marks) == 1  # the three deliveries, together; the failure is not marked done
    assert sorted(_states(kassa).values()) == ["done", "done", "done", "queued"]
    done_lines = [r.getMessage() for r in caplog.records if "outcome=done" in r.getMessage()]
    assert len(done_lines) == 3


def test_a_job_another_worker_took_over_meanwhile_is_not_marked_done_by_this_one(
    kassa: Kassa,
) -> None:
    taken: list[int] = []

    def deliver(payload: dict[str, object]) -> None:
        if payload["n"] == 0:  # while it runs, its lease passes to another worker
            with kassa.db.transaction() as session:
                pk = session.scalar(select(Job.pk).where(Job.payload["n"].as_integer() == 0))
                session.execute(update(Job).where(Job.pk == pk).values(locked_by="other"))
                taken.append(int(pk or 0))

    for n in range(2):
        kassa.jobs.enqueue("test.deliver", {"n": n})
    handlers = {"test.deliver": JobHandler(deliver, in_transaction=False)}
    claimed = kassa.jobs.claim("w", 10, set(handlers))
    states = kassa.jobs.run_batch(claimed, "w", handlers)
    (lost,) = taken
    assert states[lost] == "lost"
    assert [s for pk, s in states.items() if pk != lost] == ["done"]
    assert _states(kassa)[lost] == "running"  # the other worker's, untouched
