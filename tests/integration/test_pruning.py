"""Pruning (services/pruning.py): old done jobs, old applied events and expired
Idempotency-Keys go, in batches; recent ones stay, and so does everything money and the
audit trail depend on. On SQLite and PostgreSQL alike."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from kassa.bootstrap import Kassa
from kassa.services.pruning import PruneReport, Pruning
from kassa.storage.tables import (
    AuditRecord,
    Email,
    IdempotencyKey,
    IssuedDocument,
    Job,
    Order,
    OrderLine,
    Payment,
    PaymentAttempt,
    ProviderEvent,
    WebhookDelivery,
    WebhookDeliveryAttempt,
    WebhookEndpoint,
)
from kassa.worker import Worker
from tests.builders import make_product, paid_order
from tests.conftest import FakeClock, Keys

DAY = 24 * 3600
JOB_RETENTION_S = 7 * DAY
EVENT_RETENTION_S = 30 * DAY


def pruning(kassa: Kassa, batch: int = 5000, max_pass_s: float | None = None) -> Pruning:
    return Pruning(
        kassa.db,
        kassa.clock,
        kassa.idempotency,
        job_retention_s=JOB_RETENTION_S,
        event_retention_s=EVENT_RETENTION_S,
        batch=batch,
        max_pass_s=max_pass_s,
    )


def ago(clock: FakeClock, days: float) -> datetime:
    return clock.now - timedelta(days=days)


def add_job(kassa: Kassa, clock: FakeClock, state: str, days: float, tag: str) -> None:
    """A job that became due `days` ago and, unless queued or running, ended then."""
    at = ago(clock, days)
    with kassa.db.transaction() as session:
        session.add(
            Job(
                kind="test.kind",
                payload={"tag": tag},
                state=state,
                attempts=1,
                max_attempts=3,
                run_after=at,
                lease_until=at if state == "running" else None,
                created_at=at,
                finished_at=at if state in ("done", "dead") else None,
            )
        )


def add_event(kassa: Kassa, clock: FakeClock, event_id: str, days: float, applied: bool) -> None:
    at = ago(clock, days)
    with kassa.db.transaction() as session:
        session.add(
            ProviderEvent(
                provider="mock",
                event_id=event_id,
                type="payment_intent.succeeded",
                payload={"id": event_id},
                signed_at=at,
                received_at=at,
                applied_at=at if applied else None,
                outcome="payment succeeded" if applied else None,
                deliveries=1,
            )
        )


def add_key(kassa: Kassa, clock: FakeClock, key: str, days: float) -> None:
    at = ago(clock, days)
    with kassa.db.transaction() as session:
        session.add(
            IdempotencyKey(
                api_key_id="key_test",
                key=key,
                fingerprint="f" * 64,
                state="completed",
                locked_at=at,
                response_status=201,
                response_headers={},
                response_body=b"{}",
                created_at=at,
                completed_at=at,
            )
        )


def tags(kassa: Kassa) -> set[str]:
    with kassa.db.transaction(read_only=True) as session:
        payloads = session.scalars(select(Job.payload).where(Job.kind == "test.kind"))
        return {str(p["tag"]) for p in payloads}


def event_ids(kassa: Kassa) -> set[str]:
    with kassa.db.transaction(read_only=True) as session:
        return set(session.scalars(select(ProviderEvent.event_id)))


def key_names(kassa: Kassa) -> set[str]:
    with kassa.db.transaction(read_only=True) as session:
        return set(session.scalars(select(IdempotencyKey.key)))


def counts(kassa: Kassa, *models: Any) -> dict[str, int]:
    with kassa.db.transaction(read_only=True) as session:
        return {
            m.__tablename__: int(session.scalar(select(func.count()).select_from(m)) or 0)
            for m in models
        }


def test_old_rows_go_and_recent_and_protected_ones_stay(kassa: Kassa, clock: FakeClock) -> None:
    for state in ("done", "dead", "queued", "running"):
        add_job(kassa, clock, state, 8, f"{state}-old")
    add_job(kassa, clock, "done", 6, "done-recent")
    add_event(kassa, clock, "evt_old", 31, applied=True)
    add_event(kassa, clock, "evt_recent", 29, applied=True)
    add_event(kassa, clock, "evt_never_applied", 90, applied=False)
    add_key(kassa, clock, "key-old", 3)
    add_key(kassa, clock, "key-recent", 1)

    report = pruning(kassa).run()

    assert (report.jobs, report.events, report.idempotency_keys) == (1, 1, 1)
    assert report.complete
    assert tags(kassa) == {"dead-old", "queued-old", "running-old", "done-recent"}
    assert event_ids(kassa) == {"evt_recent", "evt_never_applied"}
    assert key_names(kassa) == {"key-recent"}
    again = pruning(kassa).run()
    assert (again.jobs, again.events, again.idempotency_keys) == (0, 0, 0)


def test_batches_bound_each_transaction(kassa: Kassa, clock: FakeClock) -> None:
    """More rows than a batch: all go, a batch of at most 3 at a time, and a table whose
    last batch came back short is not asked again."""
    for n in range(10):
        add_job(kassa, clock, "done", 8 + n, f"old-{n}")
    for n in range(7):
        add_event(kassa, clock, f"evt_{n}", 31 + n, applied=True)
    for n in range(6):
        add_key(kassa, clock, f"key-{n}", 3 + n)
    add_job(kassa, clock, "done", 1, "recent")

    report = pruning(kassa, batch=3).run()

    assert (report.jobs, report.events, report.idempotency_keys) == (10, 7, 6)
    # jobs 3+3+3+1, events 3+3+1, keys 3+3+0 (the empty third says it is done), and one
    # empty batch each of kassa's own events, webhook deliveries and e-mails
    assert report.batches == 4 + 3 + 3 + 1 + 1 + 1
    assert tags(kassa) == {"recent"}
    assert event_ids(kassa) == set()
    assert key_names(kassa) == set()


def test_purge_expired_takes_the_oldest_first_within_its_limit(
    kassa: Kassa, clock: FakeClock
) -> None:
    for n in range(5):
        add_key(kassa, clock, f"key-{n}", 3 + n)  # key-4 is the oldest
    assert kassa.idempotency.purge_expired(2) == 2
    assert key_names(kassa) == {"key-0", "key-1", "key-2"}
    assert kassa.idempotency.purge_expired() == 3


def test_a_pass_out_of_time_says_so_and_the_next_carries_on(kassa: Kassa, clock: FakeClock) -> None:
    for n in range(4):
        add_job(kassa, clock, "done", 8 + n, f"old-{n}")
    behind = pruning(kassa, batch=2, max_pass_s=0.0).run()
    assert not behind.complete
    assert behind.jobs == 0
    finished = pruning(kassa, batch=2, max_pass_s=None).run()
    assert finished.complete
    assert finished.jobs == 4


def test_a_pruning_without_time_limit_finishes_what_one_with_it_cannot(
    kassa: Kassa, clock: FakeClock
) -> None:
    for n in range(4):
        add_job(kassa, clock, "done", 8 + n, f"old-{n}")
    limited = pruning(kassa, batch=2, max_pass_s=0.0)
    unbounded = limited.without_time_limit()
    assert not limited.run().complete  # the original keeps its limit
    finished = unbounded.run()
    assert finished.complete and finished.jobs == 4


def test_money_and_audit_are_never_pruned(
    kassa: Kassa, client: TestClient, keys: Keys, clock: FakeClock
) -> None:
    """A paid order whose invoice was issued, its jobs done and its Idempotency-Key
    expired, a year later: its jobs and key go, the order, its lines, payment, attempts,
    invoice and audit trail stay."""
    make_product(client, keys)
    placed = paid_order(client, keys)
    Worker(kassa).drain()  # what the payment left for the worker, if anything
    # a job done with it (the invoice, issued in the paying transaction since issue 10,
    # no longer needs one)
    add_job(kassa, clock, "done", 0, "the order's")
    money = (Order, OrderLine, Payment, PaymentAttempt, IssuedDocument, AuditRecord)
    before = counts(kassa, *money)
    assert before["documents"] == 1
    with kassa.db.transaction(read_only=True) as session:
        done = session.scalar(select(func.count()).where(Job.state == "done")) or 0
    assert done >= 1
    clock.advance(365 * DAY)

    report = pruning(kassa).run()

    assert report.jobs == done
    assert counts(kassa, *money) == before
    assert client.get(f"/v1/orders/{placed['id']}", headers=keys.headers("admin")).json()[
        "status"
    ] == ("paid")


def test_two_pruners_at_once_delete_each_row_once(kassa: Kassa, clock: FakeClock) -> None:
    """Two workers pruning at the same moment (PostgreSQL: SKIP LOCKED; SQLite: one
    writer at a time) delete every old row once between them and both finish."""
    for n in range(40):
        add_job(kassa, clock, "done", 8 + n / 10, f"old-{n}")
    reports: list[PruneReport] = []
    start = threading.Barrier(2)

    def prune() -> None:
        start.wait()
        reports.append(pruning(kassa, batch=4).run())

    threads = [threading.Thread(target=prune) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(reports) == 2
    assert sum(r.jobs for r in reports) == 40
    assert all(r.complete for r in reports)
    assert tags(kassa) == set()


def test_the_worker_prunes_on_its_schedule(kassa: Kassa, clock: FakeClock) -> None:
    """`kassa serve` and `kassa worker` prune by themselves, every KASSA_PRUNE_INTERVAL_S."""
    add_job(kassa, clock, "done", days=30, tag="old")
    add_job(kassa, clock, "done", days=1, tag="recent")
    worker = Worker(kassa)
    worker._upkeep()
    assert tags(kassa) == {"recent"}
    add_job(kassa, clock, "done", days=30, tag="old again")
    worker._upkeep()  # within the interval: not yet
    assert tags(kassa) == {"recent", "old again"}


def add_endpoint(kassa: Kassa, clock: FakeClock) -> int:
    with kassa.db.transaction() as session:
        endpoint = WebhookEndpoint(
            id="we_prune",
            url="https://shop.example/hook",
            description=None,
            events=["*"],
            secret="whsec_x",
            created_at=clock.now,
            updated_at=clock.now,
        )
        session.add(endpoint)
        session.flush()
        return endpoint.pk


def add_delivery(
    kassa: Kassa, clock: FakeClock, endpoint_pk: int, n: int, state: str, days: float
) -> None:
    """A delivery of event n that began `days` ago and, unless pending, ended then, with
    one attempt."""
    at = ago(clock, days)
    with kassa.db.transaction() as session:
        delivery = WebhookDelivery(
            id=f"whd_{n}",
            endpoint_pk=endpoint_pk,
            event_pk=n,
            event_id=f"evt_{n}",
            event_type="order.paid",
            state=state,
            attempts=1,
            next_attempt_at=at if state == "pending" else None,
            created_at=at,
            finished_at=None if state == "pending" else at,
        )
        session.add(delivery)
        session.flush()
        session.add(
            WebhookDeliveryAttempt(
                delivery_pk=delivery.pk,
                attempt=1,
                status="succeeded" if state == "succeeded" else "failed",
                response_status=204 if state == "succeeded" else 500,
                duration_ms=5,
                created_at=at,
            )
        )


def add_email(kassa: Kassa, clock: FakeClock, n: int, status: str, days: float) -> None:
    at = ago(clock, days)
    with kassa.db.transaction() as session:
        session.add(
            Email(
                id=f"eml_{n}",
                kind="invoice",
                subject_id=f"inv_{n}",
                order_id=f"ord_{n}",
                recipient="buyer@example.com",
                subject="Your invoice",
                status=status,
                attempts=1,
                next_attempt_at=at,
                message_id=f"<{n}@kassa>",
                created_at=at,
                sent_at=at if status == "sent" else None,
            )
        )


def test_ended_deliveries_and_emails_past_their_retention_go_pending_ones_stay(
    kassa: Kassa, clock: FakeClock
) -> None:
    """Deliveries that ended 31 days ago go with their attempts (the cascade, on SQLite
    too); recent ones, and a pending one however old (it is still being retried), stay.
    E-mails sent or failed 91 days ago go; a recent one and a queued one stay."""
    endpoint = add_endpoint(kassa, clock)
    add_delivery(kassa, clock, endpoint, 1, "succeeded", 31)
    add_delivery(kassa, clock, endpoint, 2, "failed", 31)
    add_delivery(kassa, clock, endpoint, 3, "pending", 31)
    add_delivery(kassa, clock, endpoint, 4, "succeeded", 29)
    add_email(kassa, clock, 1, "sent", 91)
    add_email(kassa, clock, 2, "failed", 91)
    add_email(kassa, clock, 3, "queued", 91)
    add_email(kassa, clock, 4, "sent", 89)

    report = pruning(kassa, batch=1).run()  # a batch of one: each table takes turns

    assert (report.webhook_deliveries, report.emails) == (2, 2)
    assert report.complete
    with kassa.db.transaction(read_only=True) as session:
        deliveries = set(session.scalars(select(WebhookDelivery.id)))
        attempts = set(session.scalars(select(WebhookDeliveryAttempt.delivery_pk)))
        delivery_pks = set(session.scalars(select(WebhookDelivery.pk)))
        emails = set(session.scalars(select(Email.id)))
    assert deliveries == {"whd_3", "whd_4"}
    assert attempts == delivery_pks  # the pruned deliveries' attempts went with them
    assert emails == {"eml_3", "eml_4"}
    again = pruning(kassa).run()
    assert (again.webhook_deliveries, again.emails) == (0, 0)


def test_the_settings_name_the_delivery_and_email_retentions(
    kassa: Kassa, clock: FakeClock
) -> None:
    """kassa's own Pruning (bootstrap) takes the retentions from the settings: 30 days for
    deliveries and 90 for e-mails by default."""
    endpoint = add_endpoint(kassa, clock)
    add_delivery(kassa, clock, endpoint, 1, "succeeded", 31)
    add_delivery(kassa, clock, endpoint, 2, "succeeded", 29)
    add_email(kassa, clock, 1, "sent", 91)
    add_email(kassa, clock, 2, "sent", 89)
    report = kassa.pruning.run()
    assert (report.webhook_deliveries, report.emails) == (1, 1)
