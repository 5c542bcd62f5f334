"""`kassa webhooks` (the endpoints) and `kassa webhooks deliveries <id>` (one endpoint's
recent attempts), run as real subprocesses."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kassa.bootstrap import Kassa
from kassa.config import Settings
from kassa.services import events
from kassa.services.context import RequestContext
from tests.api.test_cli import run_cli
from tests.webhook_receiver import Receiver, serve_receiver


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, webhooks_allow_private_targets=True)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from serve_receiver()


def test_webhooks_lists_endpoints_and_one_endpoints_deliveries(
    kassa: Kassa, receiver: Receiver, database_url: str
) -> None:
    receiver.answer("/cli", 500)
    ctx = RequestContext.system("test")
    endpoint = kassa.webhook_endpoints.create(ctx, receiver.url + "/cli", [events.ORDER_PAID])
    with kassa.db.transaction() as session:
        event_id = events.record(
            session, events.ORDER_PAID, {"id": "o", "object": "order"}, kassa.clock()
        )
    kassa.dispatcher.drain()
    kassa.webhook_sender.drain()
    env = {"KASSA_DATABASE_URL": database_url}

    listed = run_cli("webhooks", env=env)
    assert listed.returncode == 0, listed.stderr
    assert endpoint.id in listed.stdout and receiver.url + "/cli" in listed.stdout
    assert "order.paid" in listed.stdout and "failing since" in listed.stdout
    assert "whsec_" not in listed.stdout

    shown = run_cli("webhooks", "deliveries", endpoint.id, env=env)
    assert shown.returncode == 0, shown.stderr
    lines = [line for line in shown.stdout.splitlines() if event_id in line]
    assert len(lines) == 2, shown.stdout  # the failed attempt and the pending one
    assert any("failed" in line and "500" in line for line in lines)
    assert any("pending" in line for line in lines)

    unknown = run_cli("webhooks", "deliveries", "we_nope", env=env)
    assert unknown.returncode == 1
    assert unknown.stderr.strip().splitlines() == ["error: no webhook endpoint 'we_nope'"]
