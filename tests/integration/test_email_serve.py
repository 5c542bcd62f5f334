"""`kassa serve` with KASSA_SMTP_URL: its embedded worker sends the buyer's e-mail on its
mail sender, and SIGTERM stops it cleanly."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kassa.bootstrap import Kassa
from kassa.config import Settings
from tests.builders import CARD
from tests.conftest import make_keys
from tests.integration.test_emails import SYSTEM, rows, stock
from tests.serving import start_serve, stop_all
from tests.smtp_server import Recorder, smtp_server


@pytest.fixture
def smtp() -> Iterator[tuple[Recorder, int]]:
    with smtp_server() as server:
        yield server


def test_serve_sends_the_confirmation_and_stops_cleanly(
    database_url: str, smtp: tuple[Recorder, int], tmp_path: Path
) -> None:
    server, port = smtp
    mail = {"KASSA_SMTP_URL": f"smtp://127.0.0.1:{port}", "KASSA_MAIL_FROM": "shop@kassa.test"}
    settings = Settings(
        database_url=database_url, smtp_url=mail["KASSA_SMTP_URL"], mail_from="shop@kassa.test"
    )
    kassa = stock(Kassa(settings))
    keys = make_keys(kassa)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KASSA_")}
    env.update(KASSA_DATABASE_URL=database_url, **mail)
    proc, api_port, log = start_serve(tmp_path, env)
    try:
        api = httpx.Client(
            base_url=f"http://127.0.0.1:{api_port}",
            headers={"Authorization": f"Bearer {keys.ops}"},
            timeout=30,
        )
        placed = api.post(
            "/v1/orders",
            json={
                "email": "ada@example.com",
                "currency": "EUR",
                "lines": [{"sku": "MUG", "quantity": 1}],
            },
        )
        assert placed.status_code == 201, placed.text
        order_id = placed.json()["id"]
        paid = api.post(f"/v1/orders/{order_id}/payments", json={"payment_method": CARD})
        assert paid.json()["status"] == "succeeded", paid.text
        assert kassa.orders.get(SYSTEM, order_id).status == "paid"
        deadline = time.monotonic() + 30  # the confirmation, and the invoice's e-mail
        while len(server.received) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(server.received) == 2
        assert all(placed.json()["number"] in got.message["Subject"] for got in server.received)
        # the server has the message before its 250 reaches kassa, which then marks it sent:
        # wait for the mark too (CI once read the invoice's row still `queued` in between)
        sent = {("order_confirmation", "sent"), ("invoice", "sent")}
        while {(row.kind, row.status) for row in rows(kassa)} != sent:
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert {(row.kind, row.status) for row in rows(kassa)} == sent

        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        stop_all([proc])
        kassa.close()
    assert len(server.received) == 2  # and nothing more on the way out
