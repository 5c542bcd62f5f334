"""The notifications benchmark's receiver (`bench/receiver.py`), run as the benchmark runs
it (a process of its own): it counts deliveries per endpoint, checks signatures with the
`standardwebhooks` library and refuses a bad one, and its dead port hangs without
answering. And how many orders a phase gets for a budget of deliveries."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from harness import http_client
from notifications import Params, Receiver, orders_for, run_receiver
from standardwebhooks import Webhook

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # base64 of 24 bytes


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    with run_receiver(tmp_path) as running:
        yield running


def signed(msg_id: str, body: str, secret: str = SECRET) -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, body),
    }


def test_deliveries_are_counted_and_their_signatures_checked(receiver: Receiver) -> None:
    receiver.secrets({"good": SECRET, "forged": SECRET})
    body = '{"type":"order.paid"}'
    other = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"
    with http_client(receiver.url) as http:
        assert (
            http.post("/hook/good", content=body, headers=signed("evt_1", body)).status_code == 204
        )
        assert (
            http.post("/hook/good", content=body, headers=signed("evt_1", body)).status_code == 204
        )
        forged = http.post("/hook/forged", content=body, headers=signed("evt_2", body, other))
        assert forged.status_code == 400
    stats = receiver.stats()["hooks"]
    assert stats["good"]["received"] == 2 and stats["good"]["distinct"] == 1
    assert stats["good"]["verified"] == 1 and stats["good"]["bad"] == 0
    assert stats["forged"]["bad"] == 1 and stats["forged"]["verified"] == 0


def test_the_dead_port_takes_a_request_and_never_answers(receiver: Receiver) -> None:
    dead = httpx.URL(receiver.dead_url)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(str(dead), content=b"{}", timeout=httpx.Timeout(5.0, read=0.5))
    deadline = time.monotonic() + 5
    while receiver.stats()["dead"]["open"] and time.monotonic() < deadline:
        time.sleep(0.05)  # the client hung up: the receiver sees it
    assert receiver.stats()["dead"] == {"connections": 1, "open": 0}
    with socket.create_connection((dead.host, dead.port), timeout=2) as held:
        held.sendall(b"POST /hook/dead HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
        time.sleep(0.2)
        assert receiver.stats()["dead"] == {"connections": 2, "open": 1}


def test_a_phase_has_fewer_orders_where_the_endpoints_would_get_more_deliveries() -> None:
    params = Params(8, 40, 2000, (1, 10, 100), ("sqlite",), 60, 60, "", None)
    assert orders_for(params, 0, 4.0) == 40
    assert orders_for(params, 1, 4.0) == 40
    assert orders_for(params, 10, 4.0) == 40  # 1,600 deliveries
    assert orders_for(params, 100, 4.0) == 5  # 2,000 deliveries
    assert orders_for(params, 1000, 4.0) == 1  # never none
    assert orders_for(params, 100, None) == 40  # no first phase to go by
