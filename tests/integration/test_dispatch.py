"""`services.dispatch`: every event reaches every consumer once, with its batch's rows or
not at all; workers dispatching at once on PostgreSQL never hand an event on twice."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kassa.bootstrap import Kassa
from kassa.config import Settings
from kassa.services import events
from kassa.services.context import RequestContext
from kassa.services.dispatch import DispatchedEvent, Dispatcher
from kassa.storage.tables import Event, WebhookDelivery
from tests.support import statements_sent

AT = datetime(2026, 12, 2, tzinfo=UTC)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, webhooks_allow_private_targets=True)


@dataclass
class Seen:
    name: str = "seen"
    ids: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    fail: bool = False

    def idle_when(self) -> None:
        return None  # wants every event

    def consume(self, session: Session, batch: Sequence[DispatchedEvent], now: datetime) -> None:
        if self.fail:
            raise RuntimeError("consumer broke")
        with self.lock:
            self.ids += [event.view.id for event in batch]


def write(kassa: Kassa, n: int) -> list[str]:
    with kassa.db.transaction() as session:
        return [
            events.record(session, events.ORDER_CREATED, {"id": f"ord_{i}", "object": "order"}, AT)
            for i in range(n)
        ]


def undispatched(kassa: Kassa) -> int:
    with kassa.db.transaction(read_only=True) as s:
        return int(s.scalar(select(func.count()).where(Event.dispatched.is_(False))) or 0)


def test_each_event_reaches_each_consumer_once_in_order(kassa: Kassa) -> None:
    ids = write(kassa, 7)
    a, b = Seen("a"), Seen("b")
    dispatcher = Dispatcher(kassa.db, kassa.clock, [a, b], batch=3)
    assert dispatcher.drain() == 7
    assert a.ids == ids and b.ids == ids
    assert dispatcher.run_once() == 0 and undispatched(kassa) == 0


def test_a_failing_consumer_rolls_the_batch_back_for_everyone(kassa: Kassa) -> None:
    ids = write(kassa, 2)
    good, bad = Seen("good"), Seen("bad", fail=True)
    dispatcher = Dispatcher(kassa.db, kassa.clock, [good, bad])
    with pytest.raises(RuntimeError):
        dispatcher.run_once()
    assert undispatched(kassa) == 2
    bad.fail, good.ids = False, []
    assert dispatcher.run_once() == 2 and good.ids == ids and bad.ids == ids


def test_an_event_rolled_back_with_its_change_is_never_dispatched(kassa: Kassa) -> None:
    class Broke(Exception):
        pass

    def change_then_fail() -> None:
        with kassa.db.transaction() as session:
            events.record(session, events.ORDER_PAID, {"id": "ord_x", "object": "order"}, AT)
            raise Broke

    with pytest.raises(Broke):
        change_then_fail()
    seen = Seen()
    assert Dispatcher(kassa.db, kassa.clock, [seen]).drain() == 0 and seen.ids == []


def test_unknown_event_types_are_refused(kassa: Kassa) -> None:
    with pytest.raises(ValueError, match="unknown event type"), kassa.db.transaction() as session:
        events.record(session, "order.exploded", {"id": "ord_x"}, AT)


def test_dispatchers_racing_on_postgres_hand_each_event_on_once(
    kassa: Kassa, is_postgres: bool
) -> None:
    if not is_postgres:
        pytest.skip("row locks: PostgreSQL")
    ids = write(kassa, 400)
    seen = Seen()
    dispatchers = [Dispatcher(kassa.db, kassa.clock, [seen], batch=7) for _ in range(4)]
    threads = [threading.Thread(target=d.drain) for d in dispatchers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert Counter(seen.ids) == Counter(ids) and undispatched(kassa) == 0


def test_with_no_endpoint_enabled_a_batch_is_marked_in_one_statement(kassa: Kassa) -> None:
    """kassa's own consumers: no endpoint and no SMTP, so nothing wants the events; the
    dispatcher marks them with one statement instead of the full way's four or five."""
    write(kassa, 3)
    with statements_sent(kassa) as sent:
        assert kassa.dispatcher.run_once() == 3
    assert undispatched(kassa) == 0
    work = [s for s in sent if s.split()[0] not in ("BEGIN", "COMMIT")]
    assert [s.split()[0] for s in work] == ["SELECT", "UPDATE"], sent  # the poll, the mark
    assert "UPDATE events" in work[1]


def test_an_idle_poll_is_one_read(kassa: Kassa, is_postgres: bool) -> None:
    with statements_sent(kassa) as sent:
        assert kassa.dispatcher.run_once() == 0
        assert kassa.webhook_sender.claim("w") is None
    reads = [s for s in sent if s.split()[0] == "SELECT"]
    assert len(reads) == 2 and all("FOR UPDATE" not in s for s in reads), sent
    # PostgreSQL: autocommit, no BEGIN or COMMIT; SQLite: a deferred read (no write lock)
    assert sent == reads if is_postgres else "BEGIN IMMEDIATE" not in sent


def test_an_enabled_endpoint_takes_the_events_the_full_way(kassa: Kassa) -> None:
    endpoint = kassa.webhook_endpoints.create(
        RequestContext.system("test"), "http://127.0.0.1:9/kassa", ["*"]
    )
    ids = write(kassa, 2)
    assert kassa.dispatcher.drain() == 2 and undispatched(kassa) == 0
    with kassa.db.transaction(read_only=True) as session:
        delivered = session.scalars(
            select(WebhookDelivery.event_id).where(WebhookDelivery.endpoint_pk.is_not(None))
        ).all()
    assert sorted(delivered) == sorted(ids), endpoint.id
