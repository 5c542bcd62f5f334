"""E-mail to the buyer when things go wrong: refusals at the envelope, a server that never
answers the data, senders killed with SIGKILL, senders side by side. On both databases,
through a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from kassa.bootstrap import Kassa
from kassa.config import Settings
from kassa.storage.tables import Email
from tests.conftest import FakeClock, Keys
from tests.integration.test_emails import (
    BUYER,
    CONFIRMATION,
    INVOICE,
    carrying,
    order_paid,
    paid_order,
    rows,
    send_all,
    stock,
    the,
)
from tests.smtp_server import Recorder, smtp_server

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def smtp() -> Iterator[tuple[Recorder, int]]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def server(smtp: tuple[Recorder, int]) -> Recorder:
    return smtp[0]


@pytest.fixture
def settings(database_url: str, smtp: tuple[Recorder, int]) -> Settings:
    return Settings(
        database_url=database_url,
        smtp_url=f"smtp://127.0.0.1:{smtp[1]}",
        mail_from="shop@kassa.test",
        smtp_timeout_s=5,  # a server that hangs is given up on soon (and a loaded CI still answers)
        document_locale="de_DE",
    )


@pytest.fixture
def shop(kassa: Kassa) -> Kassa:
    return stock(kassa)


def test_a_recipient_refused_for_good_fails_at_once_and_for_now_is_retried(
    shop: Kassa, client: TestClient, keys: Keys, server: Recorder, clock: FakeClock
) -> None:
    # each order has two messages, its confirmation and its invoice, sent in that order
    # (gone's, then busy's); each mailbox answers both of its messages alike
    server.rcpt_replies = ["550 5.1.1 no such user"] * 2 + ["450 4.2.1 mailbox busy"] * 2
    gone = paid_order(client, keys, email="gone@example.com")
    busy = paid_order(client, keys, email="busy@example.com")
    order_paid(shop, gone["id"])
    order_paid(shop, busy["id"])
    assert send_all(shop) == 4

    def of(recipient: str) -> list[Email]:
        found = [row for row in rows(shop) if row.recipient == recipient]
        assert sorted(row.kind for row in found) == [INVOICE, CONFIRMATION]
        return found

    for row in of("gone@example.com"):
        assert row.status == "failed" and "550" in (row.last_error or "")
    for row in of("busy@example.com"):
        assert row.status == "queued" and "450" in (row.last_error or "")
    assert server.data_commands == 0  # refused at the envelope: no data was sent
    clock.advance(61)
    assert send_all(shop) == 2  # busy's two; gone's never again
    assert [(row.status, row.attempts) for row in of("busy@example.com")] == [("sent", 2)] * 2
    assert [row.attempts for row in of("gone@example.com")] == [1, 1]
    assert [got.rcpt_tos for got in server.received] == [["busy@example.com"]] * 2


def test_no_reply_to_the_data_is_an_unknown_outcome_never_resent(
    shop: Kassa, client: TestClient, keys: Keys, server: Recorder, clock: FakeClock
) -> None:
    server.data_delay_s = 8  # it takes the message, but the client gives up after 5 s
    order = paid_order(client, keys)
    order_paid(shop, order["id"])
    shop.dispatcher.drain()
    assert shop.emails.send_one("test-sender")  # the first queued: the confirmation
    row = the(shop, CONFIRMATION)
    assert row.status == "failed" and "may have it" in (row.last_error or "")
    server.data_delay_s = 0
    assert send_all(shop) == 1  # the order's invoice, answered at once
    clock.advance(24 * 3600)
    assert send_all(shop) == 0
    assert len(carrying(server, row)) == 1  # the server has it once: never resent
    assert len(server.received) == 2 and server.data_commands == 2


def test_senders_side_by_side_send_each_message_once(
    shop: Kassa, client: TestClient, keys: Keys, server: Recorder, is_postgres: bool
) -> None:
    orders = [paid_order(client, keys, email=f"buyer{i}@example.com") for i in range(12)]
    for order in orders:
        order_paid(shop, order["id"])
    shop.dispatcher.drain()
    errors: list[BaseException] = []

    def sender(name: str) -> None:
        try:
            while shop.emails.send_one(name):
                pass
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=sender, args=(f"sender-{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    # 24 messages: each order's confirmation and its invoice, each sent once
    sent_to = sorted(to for got in server.received for to in got.rcpt_tos)
    assert sent_to == sorted(f"buyer{i}@example.com" for i in range(12) for _ in range(2))
    sent_ids = sorted(str(got.message["Message-ID"]) for got in server.received)
    assert sent_ids == sorted(row.message_id for row in rows(shop)) and len(sent_ids) == 24
    assert all((row.status, row.attempts) == ("sent", 1) for row in rows(shop))


# -- a sender killed with SIGKILL, in a process of its own ------------------------------

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from kassa.bootstrap import Kassa
    from kassa.config import Settings
    from kassa.mail.smtp import SmtpTransport

    url, smtp_url, when = sys.argv[1:4]
    kassa = Kassa(Settings(database_url=url, smtp_url=smtp_url, mail_from="shop@kassa.test"))
    real = kassa.emails.transport

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    class Dying:
        def __init__(self, connection):
            self.connection = connection

        def hand_over(self, message):
            reply = self.connection.hand_over(message)  # the server took it
            die()
            return reply

        def close(self):
            self.connection.close()

    class Transport:
        def open(self, sender, recipient):
            if when == "before-connecting":
                die()
            return Dying(real.open(sender, recipient))

    kassa.emails.transport = Transport()
    kassa.emails.send_one("doomed-sender")
    sys.exit(3)  # never reached: the process is killed
    """
)


def kill_a_sender(database_url: str, port: int, when: str) -> None:
    child = subprocess.run(
        [sys.executable, "-c", CHILD, database_url, f"smtp://127.0.0.1:{port}", when],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("KASSA_")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr


def test_a_sender_killed_after_the_server_took_it_never_sends_it_twice(
    shop: Kassa,
    client: TestClient,
    keys: Keys,
    smtp: tuple[Recorder, int],
    clock: FakeClock,
    database_url: str,
) -> None:
    server, port = smtp
    order = paid_order(client, keys)
    order_paid(shop, order["id"])
    shop.dispatcher.drain()
    kill_a_sender(database_url, port, "after-data")  # it takes the first queued one
    row = the(shop, CONFIRMATION)
    assert row.status == "queued" and row.handed_over_at is not None
    assert len(carrying(server, row)) == 1 and len(server.received) == 1
    clock.advance(3600)  # well past the dead sender's lease
    assert send_all(shop) == 1  # the order's invoice, which the dead sender never took
    row = the(shop, CONFIRMATION)
    assert row.status == "failed" and "outcome unknown" in (row.last_error or "")
    assert len(carrying(server, row)) == 1  # never sent twice
    assert len(server.received) == 2 and server.data_commands == 2


def test_a_sender_killed_before_connecting_is_replaced_once_its_lease_ends(
    shop: Kassa,
    client: TestClient,
    keys: Keys,
    smtp: tuple[Recorder, int],
    clock: FakeClock,
    database_url: str,
) -> None:
    server, port = smtp
    order = paid_order(client, keys)
    order_paid(shop, order["id"])
    shop.dispatcher.drain()
    kill_a_sender(database_url, port, "before-connecting")  # it takes the first queued one
    before = the(shop, CONFIRMATION)
    assert (before.status, before.attempts, before.handed_over_at) == ("queued", 1, None)
    clock.advance(3600)
    assert send_all(shop) == 2  # the confirmation again, and the order's invoice
    row = the(shop, CONFIRMATION)
    assert (row.status, row.attempts) == ("sent", 2)
    [got] = carrying(server, row)
    assert got.rcpt_tos == [BUYER] and got.message["Message-ID"] == before.message_id
    assert len(server.received) == 2
