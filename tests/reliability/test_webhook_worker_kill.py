"""A `kassa worker` killed with SIGKILL while a webhook delivery is in flight (the
receiver holds the request): after a restart the event is delivered, with the same
webhook-id and a valid signature (at least once; receivers dedupe on webhook-id)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from kassa.bootstrap import Kassa
from kassa.config import Settings
from kassa.services import events
from kassa.services.context import RequestContext
from kassa.storage.tables import WebhookDelivery, WebhookDeliveryAttempt
from tests.webhook_receiver import Receiver, serve_receiver

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, webhooks_allow_private_targets=True)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from serve_receiver()


def start_worker(database_url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "kassa.cli", "worker", "--poll", "0.1"],
        cwd=ROOT,
        env={
            **os.environ,
            "KASSA_DATABASE_URL": database_url,
            "KASSA_WEBHOOKS_ALLOW_PRIVATE_TARGETS": "1",
            "KASSA_WEBHOOK_LEASE_S": "2",
            "KASSA_WEBHOOK_CONCURRENCY": "2",
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
