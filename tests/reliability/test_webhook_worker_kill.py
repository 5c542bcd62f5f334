"""A `kassa worker` killed with SIGKILL while a webhook delivery is in flight (the
receiver holds the request): after a restart the event is delivered, with the same
webhook-id and a valid signature (at least once; receivers dedupe on webhook-id), and
the buyer's e-mail, sent before the kill, is not sent again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from kassa.bootstrap import Kassa
from kassa.config import Settings
from kassa.services import events
from kassa.services.context import RequestContext
from kassa.storage.tables import WebhookDelivery, WebhookDeliveryAttempt
from tests import builders
from tests.conftest import Keys
from tests.smtp_server import smtp_server
from tests.webhook_receiver import Receiver, serve_receiver

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, webhooks_allow_private_targets=True)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from serve_receiver()


def start_worker(database_url: str, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "kassa.cli", "worker", "--poll", "0.1"],
        cwd=ROOT,
        env={
            **os.environ,
            "KASSA_DATABASE_URL": database_url,
            "KASSA_WEBHOOKS_ALLOW_PRIVATE_TARGETS": "1",
            "KASSA_WEBHOOK_LEASE_S": "2",
            "KASSA_WEBHOOK_CONCURRENCY": "2",
            **env,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def delivery_state(kassa: Kassa) -> tuple[str | None, int]:
    with kassa.db.transaction(read_only=True) as s:
        state = s.scalar(select(WebhookDelivery.state))
        attempts = s.scalar(select(func.count()).select_from(WebhookDeliveryAttempt)) or 0
        return state, attempts


def test_a_worker_killed_mid_delivery_delivers_after_restart(
    kassa: Kassa, receiver: Receiver, database_url: str
) -> None:
    receiver.hold("/held")
    endpoint = kassa.webhook_endpoints.create(
        RequestContext.system("test"), receiver.url + "/held", ["*"]
    )
    with kassa.db.transaction() as session:
        event_id = events.record(
            session, events.ORDER_PAID, {"id": "ord_1", "object": "order"}, kassa.clock()
        )

    first = start_worker(database_url)
    try:
        assert len(receiver.wait("/held", 1, timeout=60)) == 1, "the worker never sent it"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    assert delivery_state(kassa) == ("pending", 0)  # nothing recorded: it died mid-flight
    receiver.release()  # the held request now answers a closed connection

    second = start_worker(database_url)
    try:
        got = receiver.wait("/held", 2, timeout=60)
        assert len(got) == 2, "not sent again after the restart"
        deadline = time.monotonic() + 30
        while delivery_state(kassa) != ("succeeded", 1) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        second.terminate()
        second.wait(timeout=20)
    assert delivery_state(kassa) == ("succeeded", 1)
    assert got[0].id == got[1].id == event_id
    assert got[1].verify(endpoint.secret or "")["id"] == event_id


def test_a_worker_killed_mid_delivery_of_a_paid_order_sends_its_e_mail_once(
    kassa: Kassa, client: TestClient, keys: Keys, receiver: Receiver, database_url: str
) -> None:
    """The real flow: a card payment records `order.paid`; the worker hands it on, posts
    it to an endpoint that holds the request, and e-mails the buyer; killed there, and
    started again, it delivers the event and sends no second confirmation."""
    receiver.hold("/held")
    endpoint = kassa.webhook_endpoints.create(
        RequestContext.system("test"), receiver.url + "/held", ["order.paid"]
    )
    builders.make_product(client, keys)
    placed = builders.paid_order(client, keys)
    with smtp_server() as (mail, port):
        smtp = {"KASSA_SMTP_URL": f"smtp://127.0.0.1:{port}", "KASSA_MAIL_FROM": "shop@kassa.test"}
        first = start_worker(database_url, **smtp)
        try:
            assert len(receiver.wait("/held", 1, timeout=60)) == 1, "the worker never sent it"
            deadline = time.monotonic() + 60
            while not mail.received and time.monotonic() < deadline:
                time.sleep(0.1)
            assert mail.received, "the confirmation was never sent"
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        receiver.release()

        second = start_worker(database_url, **smtp)
        try:
            got = receiver.wait("/held", 2, timeout=60)
            assert len(got) == 2, "not sent again after the restart"
            deadline = time.monotonic() + 30
            while delivery_state(kassa) != ("succeeded", 1) and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            second.terminate()
            second.wait(timeout=20)
        received = list(mail.received)
    assert delivery_state(kassa) == ("succeeded", 1)
    assert got[0].id == got[1].id
    assert got[1].verify(endpoint.secret or "")["data"]["object"]["id"] == placed["id"]
    subjects = [m.message["Subject"] for m in received]
    assert len([s for s in subjects if "confirmed" in s]) == 1, subjects
    ids = [m.message["Message-ID"] for m in received]
    assert len(ids) == len(set(ids)), "an e-mail was sent twice"
