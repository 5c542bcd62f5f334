"""Outgoing webhooks against a real local HTTP receiver, on SQLite and PostgreSQL: signed
deliveries verified by `standardwebhooks` on the receiving side, retries on kassa's
schedule (FakeClock), rotation, disabling, manual retry, deletion, and a hanging endpoint
that does not hold up another."""

from __future__ import annotations

import json
import ssl
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select
from standardwebhooks.webhooks import WebhookVerificationError

from kassa.api.app import create_app
from kassa.bootstrap import Kassa
from kassa.config import Settings
from kassa.services import events
from kassa.services.context import RequestContext
from kassa.services.events import EventView
from kassa.services.webhook_delivery import RETRY_AFTER_S, WebhookSender
from kassa.services.webhook_targets import PinnedTarget, TargetPolicy
from kassa.storage.tables import AuditRecord, Event, WebhookDelivery
from kassa.worker import WebhookSenders, WorkerPool
from tests.conftest import FakeClock, make_keys
from tests.webhook_receiver import Receiver, serve_receiver

ADMIN = RequestContext.system("test")


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, webhooks_allow_private_targets=True)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from serve_receiver()


def emit(kassa: Kassa, event_type: str = events.ORDER_PAID, n: int = 1) -> list[str]:
    with kassa.db.transaction() as session:
        return [
            events.record(
                session,
                event_type,
                {"id": f"ord_{i}", "object": "order", "total": 2500 + i},
                kassa.clock(),
            )
            for i in range(n)
        ]


def deliver(kassa: Kassa) -> int:
    """Hand new events on, then send every due delivery; how many were sent."""
    kassa.dispatcher.drain()
    return kassa.webhook_sender.drain()


def event_body(kassa: Kassa, event_id: str) -> dict[str, object]:
    with kassa.db.transaction(read_only=True) as s:
        row = s.scalar(select(Event).where(Event.id == event_id))
        assert row is not None
        return EventView.of(row).body()


def log_of(kassa: Kassa, endpoint_id: str) -> list[tuple[int, str, int | None]]:
    page = kassa.webhook_endpoints.deliveries(endpoint_id, limit=100)
    return [(row.attempt, row.status, row.response_status) for row in page.data]


def test_a_delivery_is_signed_and_verifies_on_the_receiving_side(
    kassa: Kassa, receiver: Receiver
) -> None:
    endpoint = kassa.webhook_endpoints.create(ADMIN, receiver.url + "/a", ["*"])
    assert endpoint.secret is not None
    (event_id,) = emit(kassa)
    assert deliver(kassa) == 1
    (got,) = receiver.at("/a")
    assert got.headers["webhook-id"] == event_id
    assert got.headers["content-type"] == "application/json"
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 60
    assert got.headers["webhook-signature"].startswith("v1,")
    assert got.verify(endpoint.secret) == event_body(kassa, event_id)
    assert json.loads(got.body)["data"]["object"]["total"] == 2500
    with pytest.raises(WebhookVerificationError):
        got.verify(kassa.webhook_endpoints.create(ADMIN, receiver.url, ["*"]).secret or "")
    assert log_of(kassa, endpoint.id) == [(1, "succeeded", 204)]


def test_500_then_204_gets_the_event_twice_and_the_log_shows_both(
    kassa: Kassa, receiver: Receiver, clock: FakeClock
) -> None:
    receiver.answer("/flaky", 500, 204)
    endpoint = kassa.webhook_endpoints.create(ADMIN, receiver.url + "/flaky", ["*"])
    (event_id,) = emit(kassa)
    assert deliver(kassa) == 1
    failed_at = clock()
    rows = kassa.webhook_endpoints.deliveries(endpoint.id, limit=10).data
    assert [(r.attempt, r.status) for r in rows] == [(2, "pending"), (1, "failed")]
    assert rows[1].response_status == 500 and rows[1].duration_ms is not None
    assert rows[1].next_attempt_at == failed_at + timedelta(seconds=5)
    assert rows[0].next_attempt_at == failed_at + timedelta(seconds=5)

    clock.advance(4)
    assert deliver(kassa) == 0  # not due yet
    clock.advance(1)
    assert deliver(kassa) == 1
    first, second = receiver.at("/flaky")
    assert first.id == second.id == event_id
    assert second.verify(endpoint.secret or "") == event_body(kassa, event_id)
    assert log_of(kassa, endpoint.id) == [(2, "succeeded", 204), (1, "failed", 500)]


def test_retries_follow_the_schedule_then_the_delivery_fails(
    kassa: Kassa, receiver: Receiver, clock: FakeClock
) -> None:
    receiver.answer("/down", 503)
    endpoint = kassa.webhook_endpoints.create(ADMIN, receiver.url + "/down", ["*"])
    emit(kassa)
    assert deliver(kassa) == 1
    for attempt, delay in enumerate(RETRY_AFTER_S, start=2):
        clock.advance(delay - 1)
        assert deliver(kassa) == 0, f"attempt {attempt} came before its time"
        clock.advance(1)
        assert deliver(kassa) == 1, f"attempt {attempt} did not come after {delay} s"
    assert len(receiver.at("/down")) == 8
    log = log_of(kassa, endpoint.id)
    assert log == [(n, "failed", 503) for n in range(8, 0, -1)]  # no pending row: it is over
    rows = kassa.webhook_endpoints.deliveries(endpoint.id, limit=10).data
    assert rows[0].next_attempt_at is None
    clock.advance(10 * 86400)
    assert deliver(kassa) == 0
    with kassa.db.transaction(read_only=True) as s:
        assert s.scalar(select(WebhookDelivery.state)) == "failed"


def test_an_endpoint_failing_for_5_days_is_disabled_and_audited(
    kassa: Kassa, receiver: Receiver, clock: FakeClock
) -> None:
    receiver.answer("/dead", 500)
    healthy = kassa.webhook_endpoints.create(ADMIN, receiver.url + "/ok", ["*"])
    endpoint = kassa.webhook_endpoints.create(ADMIN, receiver.url + "/dead", ["*"])
    emit(kassa)
    deliver(kassa)
    assert kassa.webhook_endpoints.get(endpoint.id).failing_since == clock()
    clock.advance(5 * 86400 - 60)
    emit(kassa)
    deliver(kassa)
    assert not kassa.webhook_endpoints.get(endpoint.id).disabled  # 4 days 23:59 of failures
    clock.advance(60)
    emit(kassa)
    deliver(kassa)
    view = kassa.webhook_endpoints.get(endpoint.id)
    assert view.disabled and "5 days" in (view.disabled_reason or "")
    assert not kassa.webhook_endpoints.get(healthy.id).disabled
    with kassa.db.transaction(read_only=True) as s:
        audited = s.scalars(
            select(AuditRecord).where(AuditRecord.action == "webhook_endpoint.disabled")
        ).all()
    assert [(a.subject_id, a.actor_key_id) for a in audited] == [(endpoint.id, "system")]
    # nothing more goes to it, and new events are not fanned out to it
    sent_before = len(receiver.at("/dead"))
    emit(kassa)
    clock.advance(86400)
    deliver(kassa)
    assert len(receiver.at("/dead")) == sent_before
    assert len(receiver.at("/ok")) == 4


def test_a_success_ends_the_failing_streak(
    kassa: Kassa, receiver: Receiver, clock: FakeClock
) -> None:
    receiver.answer("/flaky", 500, 200)
    endpoint = kassa.webhook_endpoints.create(ADMIN, receiver.url + "/flaky", ["*"])
    emit(kassa)
    deliver(kassa)
    assert kassa.webhook_endpoints.get(endpoint.id).failing_since is not None
    clock.advance(5)
    deliver(kassa)
    assert kassa.webhook_endpoints.get(endpoint.id).failing_since is None


def test_unsubscribed_events_are_not_sent(kassa: Kassa, receiver: Receiver) -> None:
    kassa.webhook_endpoints.create(ADMIN, receiver.url + "/paid", [events.ORDER_PAID])
    kassa.webhook_endpoints.create(
        ADMIN, receiver.url + "/refunds", [events.REFUND_SUCCEEDED, events.REFUND_FAILED]
    )
    kassa.webhook_endpoints.create(ADMIN, receiver.url + "/all", ["*"])
    emit(kassa, events.ORDER_CREATED)
    (paid,) = emit(kassa, events.ORDER_PAID)
    (refunded,) = emit(kassa, events.REFUND_SUCCEEDED)
    assert deliver(kassa) == 5
    assert [r.id for r in receiver.at("/paid")] == [paid]
    assert [r.id for r in receiver.at("/refunds")] == [refunded]
    assert len(receiver.at("/all")) == 3


def test_each_event_is_fanned_out_once_per_endpoint(kassa: Kassa, receiver: Receiver) -> None:
    for name in ("a", "b"):
        kassa.webhook_endpoints.create(ADMIN, f"{receiver.url}/{name}", ["*"])
    emit(kassa, n=120)
    kassa.dispatcher.drain()
    kassa.dispatcher.drain()
    with kassa.db.transaction(read_only=True) as s:
        assert s.scalar(select(func.count()).select_from(WebhookDelivery)) == 240
        pairs = s.execute(select(WebhookDelivery.event_id, WebhookDelivery.endpoint_pk)).all()
    assert len(set(pairs)) == 240


def test_a_rotated_secret_signs_beside_the_old_one_for_24_hours(
    kassa: Kassa, receiver: Receiver, clock: FakeClock
) -> None:
    created = kassa.webhook_endpoints.create(ADMIN, receiver.url + "/r", ["*"])
    rotated = kassa.webhook_endpoints.rotate_secret(ADMIN, created.id)
    old, new = created.secret or "", rotated.secret or ""
    assert old != new and new.startswith("whsec_")
    assert rotated.previous_secret_expires_at == clock() + timedelta(hours=24)

    (during,) = emit(kassa)
    deliver(kassa)
    (got,) = receiver.at("/r")
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    assert got.verify(old)["id"] == during
    assert got.verify(new)["id"] == during

    clock.advance(24 * 3600 + 1)
    (after,) = emit(kassa)
    deliver(kassa)
    _, later = receiver.at("/r")
    assert len(later.headers["webhook-signature"].split(" ")) == 1
    assert later.verify(new)["id"] == after
    with pytest.raises(WebhookVerificationError):
        later.verify(old)
    assert kassa.webhook_endpoints.get(created.id).previous_secret_expires_at is None


def test_a_manual_retry_sends_a_failed_delivery_again_now(
    kassa: Kassa, receiver: Receiver, clock: FakeClock
) -> None:
    receiver.answer("/late", *[500] * 8, 204)
    endpoint = kassa.webhook_endpoints.create(ADMIN, receiver.url + "/late", ["*"])
    emit(kassa)
    deliver(kassa)
    for delay in RETRY_AFTER_S:
        clock.advance(delay)
        deliver(kassa)
    rows = kassa.webhook_endpoints.deliveries(endpoint.id, limit=1).data
    assert rows[0].status == "failed" and rows[0].attempt == 8
    pending = kassa.webhook_endpoints.retry(ADMIN, rows[0].id)
    assert (pending.status, pending.attempt, pending.next_attempt_at) == ("pending", 9, clock())
    assert deliver(kassa) == 1
    assert log_of(kassa, endpoint.id)[0] == (9, "succeeded", 204)
    with kassa.db.transaction(read_only=True) as s:
        assert s.scalar(select(WebhookDelivery.state)) == "succeeded"


def test_deleting_an_endpoint_stops_its_deliveries(
    kassa: Kassa, receiver: Receiver, clock: FakeClock
) -> None:
    receiver.answer("/gone", 500)
    endpoint = kassa.webhook_endpoints.create(ADMIN, receiver.url + "/gone", ["*"])
    emit(kassa, n=2)
    assert deliver(kassa) == 2
    kassa.webhook_endpoints.delete(ADMIN, endpoint.id)
    clock.advance(3600)
    emit(kassa)
    assert deliver(kassa) == 0
    assert len(receiver.at("/gone")) == 2
    with kassa.db.transaction(read_only=True) as s:
        assert s.scalar(select(func.count()).select_from(WebhookDelivery)) == 0


def test_a_hanging_endpoint_does_not_delay_another(kassa: Kassa, receiver: Receiver) -> None:
    receiver.hold("/hang")
    kassa.webhook_endpoints.create(ADMIN, receiver.url + "/hang", ["*"])
    kassa.webhook_endpoints.create(ADMIN, receiver.url + "/ok", ["*"])
    senders = WebhookSenders(kassa, 4, poll_s=0.02)
    senders.start()
    try:
        # the first event takes two senders into /hang, which never answers
        emit(kassa, n=3)
        kassa.dispatcher.drain()
        started = time.monotonic()
        hung = receiver.wait("/hang", 2, timeout=5)
        ok = receiver.wait("/ok", 3, timeout=5)
        assert len(hung) == 2, "two deliveries to the hanging endpoint at most, in flight"
        assert len(ok) == 3
        assert max(r.at for r in ok) - started < 1.0
        time.sleep(0.3)
        assert len(receiver.at("/hang")) == 2  # the third waits for a free slot
        # a later event to /ok goes through while /hang still holds its two
        emit(kassa)
        kassa.dispatcher.drain()
        started = time.monotonic()
        assert len(receiver.wait("/ok", 4, timeout=5)) == 4
        assert receiver.at("/ok")[-1].at - started < 1.0
    finally:
        receiver.release()
        senders.stop()
        assert senders.join(timeout=15)


def test_a_delivery_recheck_refuses_an_address_that_is_no_longer_allowed(
    kassa: Kassa, receiver: Receiver, database_url: str
) -> None:
    """DNS rebinding: the address is vetted again when the delivery is sent. An endpoint
    stored while private targets were allowed is not sent to by a worker without it."""
    endpoint = kassa.webhook_endpoints.create(ADMIN, receiver.url + "/inside", ["*"])
    emit(kassa)
    kassa.dispatcher.drain()
    strict = Kassa(Settings(database_url=database_url), clock=kassa.clock)
    try:
        assert strict.webhook_sender.drain() == 1
    finally:
        strict.close()
    assert receiver.at("/inside") == []
    (row,) = [
        r for r in kassa.webhook_endpoints.deliveries(endpoint.id, limit=5).data if r.attempt == 1
    ]
    assert row.status == "failed" and "not sent" in (row.error or "")
    assert "127.0.0.1" in (row.error or "")


def test_metrics_count_deliveries_by_outcome(
    kassa: Kassa, receiver: Receiver, clock: FakeClock
) -> None:
    receiver.answer("/bad", 500)
    kassa.webhook_endpoints.create(ADMIN, receiver.url + "/good", ["*"])
    kassa.webhook_endpoints.create(ADMIN, receiver.url + "/bad", [events.ORDER_PAID])
    assert kassa.metrics.read().deliveries == {"pending": 0, "succeeded": 0, "failed": 0}
    emit(kassa, n=2)
    emit(kassa, events.ORDER_CREATED)
    deliver(kassa)
    assert kassa.metrics.read().deliveries == {"pending": 2, "succeeded": 3, "failed": 0}
    with TestClient(create_app(kassa)) as client:
        text = client.get("/metrics", headers=make_keys(kassa).headers("ops")).text
    assert 'kassa_webhook_deliveries{state="succeeded"} 3.0' in text
    assert 'kassa_webhook_deliveries{state="pending"} 2.0' in text


def test_an_endpoint_that_does_not_answer_in_time_is_a_failed_attempt(
    kassa: Kassa, receiver: Receiver, clock: FakeClock
) -> None:
    receiver.hold("/slow")
    endpoint = kassa.webhook_endpoints.create(ADMIN, receiver.url + "/slow", ["*"])
    emit(kassa)
    kassa.dispatcher.drain()
    sender = WebhookSender(kassa.db, kassa.clock, kassa.webhook_targets, timeout_s=0.5)
    try:
        started = time.monotonic()
        assert sender.drain() == 1
        assert time.monotonic() - started < 5
    finally:
        sender.close()
    rows = kassa.webhook_endpoints.deliveries(endpoint.id, limit=5).data
    assert [(r.attempt, r.status) for r in rows] == [(2, "pending"), (1, "failed")]
    assert rows[1].error == "timed out" and rows[1].response_status is None
    assert rows[1].next_attempt_at == clock() + timedelta(seconds=5)


def test_concurrent_senders_send_each_delivery_once_and_two_per_endpoint_at_most(
    kassa: Kassa, receiver: Receiver
) -> None:
    paths = ["/one", "/two", "/three"]
    for path in paths:
        receiver.slow(path, 0.05)
        kassa.webhook_endpoints.create(ADMIN, receiver.url + path, ["*"])
    ids = emit(kassa, n=12)
    kassa.dispatcher.drain()
    senders = WebhookSenders(kassa, 8, poll_s=0.02)
    senders.start()
    try:
        for path in paths:
            assert len(receiver.wait(path, 12, timeout=30)) == 12
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and kassa.metrics.read().deliveries["succeeded"] < 36:
            time.sleep(0.05)
    finally:
        senders.stop()
        assert senders.join(timeout=15)
    time.sleep(0.2)  # nothing more arrives
    for path in paths:
        assert sorted(r.id for r in receiver.at(path)) == sorted(ids), path
        assert receiver.most_in_flight[path] <= 2, receiver.most_in_flight
    assert max(receiver.most_in_flight.values()) == 2  # they did overlap
    assert kassa.metrics.read().deliveries == {"pending": 0, "succeeded": 36, "failed": 0}


def test_a_delivery_whose_event_was_pruned_fails_at_once(kassa: Kassa, receiver: Receiver) -> None:
    """Deliveries keep no foreign key to events, so pruning events stays possible; a
    delivery whose event is gone fails, saying so, and does not count against the
    endpoint."""
    endpoint = kassa.webhook_endpoints.create(ADMIN, receiver.url + "/p", ["*"])
    (event_id,) = emit(kassa)
    kassa.dispatcher.drain()
    with kassa.db.transaction() as s:
        s.execute(delete(Event).where(Event.id == event_id))
    assert kassa.webhook_sender.drain() == 1
    assert receiver.at("/p") == []
    (row,) = kassa.webhook_endpoints.deliveries(endpoint.id, limit=5).data
    assert (row.status, row.event, row.next_attempt_at) == ("failed", event_id, None)
    assert "pruned" in (row.error or "")
    assert kassa.webhook_endpoints.get(endpoint.id).failing_since is None


# -- HTTPS to a pinned address ----------------------------------------------------------


class PinTo(TargetPolicy):
    """The policy's answer for one public name, as if it had resolved and been vetted: the
    address to connect to is given (this machine's loopback, where the test's receiver is;
    the real policy refuses loopback, which `test_contract_webhook_endpoints` shows)."""

    def __init__(self, target: PinnedTarget) -> None:
        super().__init__(allow_private=False)
        self.target = target

    def pin(self, url: str) -> PinnedTarget:
        return self.target


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for the name `hooks.test` only (no IP address in it)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=hooks.test"),
            *("-addext", "subjectAltName=DNS:hooks.test"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def tls_receiver(tls_files: tuple[Path, Path]) -> Iterator[Receiver]:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(*tls_files)
    yield from serve_receiver(server)


@pytest.mark.parametrize("with_sni", [True, False])
def test_https_to_the_vetted_address_verifies_the_certificate_for_the_urls_name(
    kassa: Kassa, tls_receiver: Receiver, tls_files: tuple[Path, Path], with_sni: bool
) -> None:
    """The request goes to the vetted IP address, yet TLS checks the certificate against
    the URL's host name (sent as SNI) and the Host header names it: without the name, the
    certificate (which names no address) is refused."""
    port = tls_receiver.url.rsplit(":", 1)[1]
    endpoint = kassa.webhook_endpoints.create(ADMIN, f"https://hooks.test:{port}/tls", ["*"])
    emit(kassa)
    kassa.dispatcher.drain()
    pinned = PinnedTarget(
        f"https://127.0.0.1:{port}/tls", f"hooks.test:{port}", "hooks.test" if with_sni else None
    )
    trust = ssl.create_default_context(cafile=str(tls_files[0]))
    sender = WebhookSender(
        kassa.db, kassa.clock, PinTo(pinned), transport=httpx.HTTPTransport(verify=trust)
    )
    try:
        assert sender.drain() == 1
    finally:
        sender.close()
    row = kassa.webhook_endpoints.deliveries(endpoint.id, limit=1).data[-1]
    if with_sni:
        (got,) = tls_receiver.at("/tls")
        assert got.headers["host"] == f"hooks.test:{port}"
        assert got.verify(endpoint.secret or "")["object"] == "event"
        assert (row.status, row.response_status) == ("succeeded", 204)
    else:
        assert tls_receiver.at("/tls") == []
        assert row.status == "failed" and "CERTIFICATE_VERIFY_FAILED" in (row.error or "")


def test_the_worker_pool_dispatches_and_sends_and_stops_cleanly(
    kassa: Kassa, receiver: Receiver
) -> None:
    """What `kassa worker` and `kassa serve`'s embedded worker run: the job loop hands the
    event on, the pool's senders deliver it; stop() ends both."""
    endpoint = kassa.webhook_endpoints.create(ADMIN, receiver.url + "/pool", ["*"])
    pool = WorkerPool(kassa, 1, poll_s=0.02)
    assert pool.webhooks is not None
    pool.start()
    try:
        (event_id,) = emit(kassa)
        (got,) = receiver.wait("/pool", 1, timeout=10)
        assert got.verify(endpoint.secret or "")["id"] == event_id
    finally:
        pool.stop()
        assert pool.join(timeout=15)


def test_the_lease_itself_refuses_a_third_delivery_of_a_full_endpoint(
    kassa: Kassa, receiver: Receiver
) -> None:
    """The endpoint's lease count, read with its lock, can be stale on PostgreSQL: in READ
    COMMITTED a statement's snapshot is taken before the row lock is won, so a claimer that
    locks the endpoint just after another committed its lease counts one lease too few (CI
    saw three deliveries of one endpoint in flight). The lease UPDATE, a later statement
    with a later snapshot, must therefore refuse on its own when the endpoint is full."""
    from kassa.services import webhook_delivery

    kassa.webhook_endpoints.create(ADMIN, receiver.url + "/full", ["*"])
    emit(kassa, n=3)
    kassa.dispatcher.drain()
    sender = kassa.webhook_sender
    assert sender.claim("a") is not None
    assert sender.claim("b") is not None
    assert sender.claim("c") is None  # the pre-check under the lock
    now = kassa.clock()
    with kassa.db.transaction() as session:
        (endpoint_pk,) = session.execute(select(WebhookDelivery.endpoint_pk).limit(1)).one()
        for statement in (webhook_delivery._LEASE, webhook_delivery._LEASE_LOCKING):
            if statement is webhook_delivery._LEASE_LOCKING and kassa.db.is_sqlite:
                continue
            leased = session.execute(
                statement,
                {
                    "of_endpoint": endpoint_pk,
                    "now": now,
                    "lease_to": now + timedelta(seconds=60),
                    "owner": "stale",
                },
            ).first()
            assert leased is None
