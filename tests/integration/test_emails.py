"""E-mail to the buyer, on both databases, through a real SMTP server (aiosmtpd).

Orders are placed and paid through the API, credit notes issued by the real worker, and
the state changes record their events (`order.paid`, `invoice.issued`,
`credit_note.issued`). An order's invoice is issued in the transaction that pays it, so
every paid order here has two messages: its confirmation and its invoice, queued in that
order and so sent in that order (`Emails.claim`: the soonest due, then the first queued).
A test about one message's mechanics picks that message by kind or Message-ID, and a
scripted reply (`server.replies`, "the next DATA") is lined up with the sending order.
Tests that record more events here (`order_paid`) add duplicates of what the payment
already recorded: the buyer still gets one message per kind and subject."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from datetime import datetime
from email.message import EmailMessage
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pypdf import PdfReader
from sqlalchemy import select

from kassa.bootstrap import Kassa
from kassa.config import Settings
from kassa.mail.smtp import Connection, SmtpTransport
from kassa.services import events
from kassa.services.catalogue import NewProduct
from kassa.services.context import RequestContext
from kassa.services.dispatch import DispatchedEvent
from kassa.services.emails import MAX_ATTEMPTS, UNKNOWN_OUTCOME
from kassa.services.events import EventView
from kassa.storage.errors import StorageError
from kassa.storage.tables import Email
from kassa.worker import Worker, WorkerPool
from tests import builders
from tests.conftest import FakeClock, Keys, Sleeps, free_port
from tests.smtp_server import Received, Recorder, smtp_server

BUYER = "ada@example.com"
SYSTEM = RequestContext.system("test")
CONFIRMATION, INVOICE = "order_confirmation", "invoice"


@pytest.fixture
def smtp() -> Iterator[tuple[Recorder, int]]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def settings(database_url: str, smtp: tuple[Recorder, int]) -> Settings:
    return Settings(
        database_url=database_url,
        smtp_url=f"smtp://127.0.0.1:{smtp[1]}",
        mail_from="Kassa Test GmbH <shop@kassa.test>",
        smtp_timeout_s=30,  # the default: a loaded machine may take seconds to answer
        seller_name="Kassa Test GmbH",
        seller_email="shop@kassa.test",
        tax_rate_bp=1900,
        document_locale="de_DE",
    )


@pytest.fixture
def server(smtp: tuple[Recorder, int]) -> Recorder:
    return smtp[0]


def stock(kassa: Kassa) -> Kassa:
    kassa.catalogue.create(SYSTEM, NewProduct("MUG", "Enamel mug", 1250, "EUR", stock=None))
    kassa.catalogue.create(SYSTEM, NewProduct("TEA", "Green tea", 499, "EUR", stock=None))
    return kassa


@pytest.fixture
def shop(kassa: Kassa) -> Kassa:
    return stock(kassa)


def paid_order(client: TestClient, keys: Keys, email: str = BUYER) -> dict[str, Any]:
    return builders.paid_order(client, keys, "ops", lines=[("MUG", 2), ("TEA", 1)], email=email)


def record(kassa: Kassa, event_type: str, name: str, view: Any, times: int = 1) -> None:
    with kassa.db.transaction() as session:
        for _ in range(times):
            events.record(session, event_type, events.resource_json(name, view), kassa.clock())


def order_paid(kassa: Kassa, order_id: str, times: int = 1) -> None:
    """`times` more `order.paid` events for an order (its payment recorded one already)."""
    record(kassa, events.ORDER_PAID, "order", kassa.orders.get(SYSTEM, order_id), times)


def send_all(kassa: Kassa) -> int:
    """Dispatch every event, then send every due message; how many were tried."""
    kassa.dispatcher.drain()
    tried = 0
    while kassa.emails.send_one("test-sender"):
        tried += 1
    return tried


def rows(kassa: Kassa) -> list[Email]:
    with kassa.db.transaction(read_only=True) as session:
        return list(session.scalars(select(Email).order_by(Email.pk)))


def of_kind(kassa: Kassa, kind: str) -> list[Email]:
    return [row for row in rows(kassa) if row.kind == kind]


def the(kassa: Kassa, kind: str) -> Email:
    """The one e-mail of `kind` (a test with one paid order has one of each)."""
    [row] = of_kind(kassa, kind)
    return row


def carrying(server: Recorder, row: Email) -> list[Received]:
    """What the server took with `row`'s Message-ID: one entry per copy it accepted."""
    return [got for got in server.received if got.message["Message-ID"] == row.message_id]


def parts(message: EmailMessage) -> dict[str, Any]:
    body_text = message.get_body(("plain",))
    body_html = message.get_body(("html",))
    assert body_text is not None and body_html is not None
    return {
        "text": body_text.get_content(),
        "html": body_html.get_content(),
        "attachments": [
            (a.get_content_type(), a.get_filename(), a.get_content())
            for a in message.iter_attachments()
        ],
    }


def test_a_paid_order_gets_one_confirmation_text_and_html_amounts_in_the_locale(
    shop: Kassa, client: TestClient, keys: Keys, server: Recorder
) -> None:
    order = paid_order(client, keys)
    order_paid(shop, order["id"])
    assert send_all(shop) == 2  # the confirmation, and the invoice issued as it was paid

    row = the(shop, CONFIRMATION)  # one confirmation, however many order.paid
    [got] = carrying(server, row)  # and the server took it once
    assert got.rcpt_tos == [BUYER] and got.mail_from == "shop@kassa.test"
    message = got.message
    assert order["number"].startswith("K-") and order["number"] in message["Subject"]
    assert message.get_content_type() == "multipart/alternative"
    body = parts(message)
    # 2 x 12,50 + 4,99 = 29,99, written as de_DE writes euros (Babel)
    assert "29,99\xa0€" in body["text"] and "29,99\xa0€" in body["html"]
    assert "25,00\xa0€" in body["text"] and "Enamel mug" in body["html"]
    assert body["attachments"] == []
    assert (row.kind, row.status, row.attempts, row.recipient) == (
        "order_confirmation",
        "sent",
        1,
        BUYER,
    )
    assert sorted(r.kind for r in rows(shop)) == [INVOICE, CONFIRMATION]
    assert message["Message-ID"] == row.message_id == f"<{row.id}@kassa>"
    assert row.sent_at is not None and row.subject == message["Subject"]


def test_the_invoice_and_the_refund_notice_carry_their_pdfs(
    shop: Kassa, client: TestClient, keys: Keys, server: Recorder
) -> None:
    order = paid_order(client, keys)
    invoice = shop.invoices.invoice_of(SYSTEM, order["id"])  # issued as the order was paid
    refund = client.post(
        f"/v1/orders/{order['id']}/refunds",
        json={"amount": 1000, "reason": "chipped mug"},
        headers=keys.headers("ops"),
    )
    assert refund.status_code == 201, refund.text
    Worker(shop, name="test-worker").drain()  # issues the credit note
    [note] = shop.invoices.credit_notes_of(SYSTEM, order["id"])
    assert send_all(shop) == 3  # the order's confirmation, its invoice, its refund notice

    by_kind = {row.kind: row for row in rows(shop)}
    assert set(by_kind) == {"order_confirmation", "invoice", "refund_notice"}
    assert all(row.status == "sent" for row in by_kind.values())
    by_id = {got.message["Message-ID"]: got.message for got in server.received}
    invoice_mail = by_id[by_kind["invoice"].message_id]
    note_mail = by_id[by_kind["refund_notice"].message_id]
    for message, document, amount in (
        (invoice_mail, invoice, "29,99\xa0€"),
        (note_mail, note, "10,00\xa0€"),
    ):
        assert order["number"] in message["Subject"] and document.number in message["Subject"]
        assert message.get_content_type() == "multipart/mixed"
        body = parts(message)
        assert amount in body["text"] and amount in body["html"]
        [(content_type, filename, pdf)] = body["attachments"]
        assert content_type == "application/pdf" and filename == f"{document.number}.pdf"
        assert pdf.startswith(b"%PDF-")
        text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
        assert document.number in text
    assert "Refund" in note_mail["Subject"]


def test_duplicate_events_leave_one_message(
    shop: Kassa, client: TestClient, keys: Keys, server: Recorder
) -> None:
    order = paid_order(client, keys)
    order_paid(shop, order["id"], times=200)
    shop.dispatcher.drain()
    # the same event handed on again (a consumer must not count on exactly-once alone)
    view = shop.orders.get(SYSTEM, order["id"])
    again = DispatchedEvent(
        pk=0,
        view=EventView(
            id="evt_again",
            type=events.ORDER_PAID,
            created_at=shop.clock(),
            data={"object": events.resource_json("order", view)},
        ),
    )
    for _ in range(2):
        with shop.db.transaction() as session:
            shop.emails.consume(session, [again], shop.clock())
    confirmation = the(shop, CONFIRMATION)
    assert len(rows(shop)) == 2  # that one confirmation, and the order's invoice
    assert send_all(shop) == 2
    order_paid(shop, order["id"])  # after it was sent: still that one message
    assert send_all(shop) == 0
    assert len(carrying(server, confirmation)) == 1 and len(server.received) == 2
    assert the(shop, CONFIRMATION).id == confirmation.id and len(rows(shop)) == 2


def test_a_temporary_refusal_is_retried_with_backoff(
    shop: Kassa, client: TestClient, keys: Keys, server: Recorder, clock: FakeClock
) -> None:
    server.replies = ["451 4.3.0 try again later"]  # to the first DATA: the confirmation's
    order = paid_order(client, keys)
    order_paid(shop, order["id"])
    assert send_all(shop) == 2  # the confirmation refused, then the invoice sent
    row = the(shop, CONFIRMATION)
    assert (row.status, row.attempts) == ("queued", 1) and "451" in (row.last_error or "")
    assert row.next_attempt_at > clock()
    assert carrying(server, row) == [] and the(shop, INVOICE).status == "sent"
    assert not shop.emails.send_one("test-sender")  # not due yet
    clock.advance(61)
    assert send_all(shop) == 1
    row = the(shop, CONFIRMATION)
    assert (row.status, row.attempts, row.last_error) == ("sent", 2, None)
    assert len(carrying(server, row)) == 1
    assert server.data_commands == 3 and len(server.received) == 2  # the invoice's once


def test_a_permanent_refusal_fails_and_is_never_retried(
    shop: Kassa, client: TestClient, keys: Keys, server: Recorder, clock: FakeClock
) -> None:
    server.replies = ["550 5.1.1 no such mailbox"]  # to the first DATA: the confirmation's
    order = paid_order(client, keys)
    order_paid(shop, order["id"])
    assert send_all(shop) == 2  # the confirmation refused, then the invoice sent
    clock.advance(24 * 3600)
    assert send_all(shop) == 0
    row = the(shop, CONFIRMATION)
    assert (row.status, row.attempts) == ("failed", 1) and "550" in (row.last_error or "")
    assert carrying(server, row) == []
    assert server.data_commands == 2 and len(server.received) == 1  # the invoice's only


def test_smtp_down_is_retried_later_and_gives_up_after_max_attempts(
    database_url: str, clock: FakeClock
) -> None:
    port = free_port()  # nothing listens there yet
    settings = Settings(
        database_url=database_url,
        smtp_url=f"smtp://127.0.0.1:{port}",
        mail_from="shop@kassa.test",
        smtp_timeout_s=30,  # the default: a loaded machine may take seconds to answer
    )
    kassa = Kassa(settings, clock=clock)
    try:
        stock(kassa)
        keys = _keys(kassa)
        with TestClient(_app(kassa)) as client:
            order = paid_order(client, keys)
        order_paid(kassa, order["id"])
        assert send_all(kassa) == 2  # the order's confirmation and its invoice
        for row in rows(kassa):
            assert (row.status, row.attempts) == ("queued", 1)
            assert "Connection" in (row.last_error or "") or "refused" in (row.last_error or "")
        clock.advance(60)
        with smtp_server(port) as (server, _):
            assert send_all(kassa) == 2
            assert [(row.status, row.attempts) for row in rows(kassa)] == [("sent", 2)] * 2
            assert len(server.received) == 2
        # more messages while the server stays down (a second order's confirmation and
        # invoice; the first order's invoice went out above): each tried MAX_ATTEMPTS
        # times, then failed
        with TestClient(_app(kassa)) as client:
            later = paid_order(client, keys)
        for _ in range(MAX_ATTEMPTS + 2):
            send_all(kassa)
            clock.advance(3600)
        assert sorted(
            (row.kind, row.status, row.attempts)
            for row in rows(kassa)
            if row.order_id == later["id"]
        ) == [(INVOICE, "failed", MAX_ATTEMPTS), (CONFIRMATION, "failed", MAX_ATTEMPTS)]
    finally:
        kassa.close()


def _app(kassa: Kassa) -> Any:
    from kassa.api.app import create_app

    return create_app(kassa)


def _keys(kassa: Kassa) -> Keys:
    from tests.conftest import make_keys

    return make_keys(kassa)


def test_without_smtp_nothing_is_queued_and_nothing_fails(
    database_url: str, clock: FakeClock
) -> None:
    kassa = Kassa(Settings(database_url=database_url), clock=clock)
    try:
        stock(kassa)
        keys = _keys(kassa)
        with TestClient(_app(kassa)) as client:
            order = paid_order(client, keys)
            # order.created, payment.succeeded, order.paid, and invoice.issued: the invoice
            # is issued as the order is paid, each with no e-mail to queue
            assert kassa.dispatcher.drain() == 4
            assert rows(kassa) == []
            refund = client.post(
                f"/v1/orders/{order['id']}/refunds",
                json={"amount": 1000, "reason": "chipped mug"},
                headers=keys.headers("ops"),
            )
            assert refund.status_code == 201, refund.text
        # the worker's document job (the credit note) and its credit_note.issued: no error
        assert Worker(kassa, name="test-worker").drain() >= 1
        assert len(kassa.invoices.credit_notes_of(SYSTEM, order["id"])) == 1
        assert rows(kassa) == [] and not kassa.emails.send_one("test-sender")
        assert not kassa.emails.enabled and WorkerPool(kassa).mail is None
    finally:
        kassa.close()


class Killed(BaseException):
    """A sender dying on the spot (nothing after it runs, as after SIGKILL)."""


class DiesAfterHandOver:
    """The real transport, but the sender dies right after the server answered DATA:
    the message went out, and `sent` was never recorded."""

    def __init__(self, real: SmtpTransport) -> None:
        self.real = real

    def open(self, sender: str, recipient: str) -> Connection:
        connection = self.real.open(sender, recipient)

        class Dying:
            def hand_over(self, message: EmailMessage) -> str:
                connection.hand_over(message)
                raise Killed

            def close(self) -> None:
                connection.close()

        return Dying()


class DiesBeforeConnecting:
    def open(self, sender: str, recipient: str) -> Connection:
        raise Killed


def test_a_sender_killed_after_the_server_took_the_message_never_sends_it_again(
    shop: Kassa, client: TestClient, keys: Keys, server: Recorder, clock: FakeClock
) -> None:
    order = paid_order(client, keys)
    order_paid(shop, order["id"])
    shop.dispatcher.drain()
    real = shop.emails.transport
    assert isinstance(real, SmtpTransport)
    shop.emails.transport = DiesAfterHandOver(real)
    with pytest.raises(Killed):
        shop.emails.send_one("doomed-sender")  # the first queued: the confirmation
    row = the(shop, CONFIRMATION)
    assert (row.status, row.attempts) == ("queued", 1) and row.handed_over_at is not None
    assert len(carrying(server, row)) == 1 and len(server.received) == 1  # the server has it

    shop.emails.transport = real  # a healthy sender, before and after the lease runs out
    assert send_all(shop) == 1  # the invoice, which the dead sender never touched
    clock.advance(3600)
    assert send_all(shop) == 0
    row = the(shop, CONFIRMATION)
    assert (row.status, row.last_error) == ("failed", UNKNOWN_OUTCOME)
    assert len(carrying(server, row)) == 1  # never sent again
    assert the(shop, INVOICE).status == "sent"
    assert len(server.received) == 2 and server.data_commands == 2


def test_a_sender_killed_before_handing_over_is_replaced_with_the_same_message_id(
    shop: Kassa, client: TestClient, keys: Keys, server: Recorder, clock: FakeClock
) -> None:
    order = paid_order(client, keys)
    order_paid(shop, order["id"])
    shop.dispatcher.drain()
    real = shop.emails.transport
    shop.emails.transport = DiesBeforeConnecting()
    with pytest.raises(Killed):
        shop.emails.send_one("doomed-sender")  # the first queued: the confirmation
    before = the(shop, CONFIRMATION)
    assert (before.status, before.attempts, before.handed_over_at) == ("queued", 1, None)
    shop.emails.transport = real
    assert send_all(shop) == 1  # the invoice only: the confirmation's lease holds it
    assert carrying(server, before) == []
    clock.advance(3600)
    assert send_all(shop) == 1
    after = the(shop, CONFIRMATION)
    assert (after.status, after.attempts) == ("sent", 2)
    [got] = carrying(server, after)
    assert got.message["Message-ID"] == before.message_id == after.message_id
    assert len(server.received) == 2  # it, and the invoice


def test_a_sender_that_lost_its_lease_does_not_hand_the_message_over(
    shop: Kassa, client: TestClient, keys: Keys, server: Recorder, clock: FakeClock
) -> None:
    order = paid_order(client, keys)
    order_paid(shop, order["id"])
    shop.dispatcher.drain()
    slow = shop.emails.claim("slow-sender")
    assert slow is not None and slow.kind == CONFIRMATION  # the first queued
    clock.advance(3600)  # its lease ran out; another sender takes the message and sends it
    assert send_all(shop) == 2  # the confirmation, and the invoice after it
    assert not shop.emails.mark_handed_over(slow, "slow-sender")
    [got] = carrying(server, the(shop, CONFIRMATION))
    assert got.message["Message-ID"] == slow.message_id and len(server.received) == 2


def test_the_worker_pool_sends_on_its_own_thread_and_stops_cleanly(
    shop: Kassa, client: TestClient, keys: Keys, server: Recorder
) -> None:
    paid_order(client, keys)
    pool = WorkerPool(shop, poll_s=0.05)
    assert pool.mail is not None
    pool.mail._poll = 0.05
    pool.start()
    try:  # the confirmation and the invoice, both queued once the order's events go out
        deadline = time.monotonic() + 20
        while len(server.received) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        pool.stop()
        assert pool.join(timeout=10)
    assert len(server.received) == 2
    assert {(row.kind, row.status) for row in rows(shop)} == {
        ("order_confirmation", "sent"),
        ("invoice", "sent"),
    }


def test_list_emails_filters_by_order_and_is_for_ops_and_admin(
    shop: Kassa, client: TestClient, keys: Keys, server: Recorder
) -> None:
    first = paid_order(client, keys)
    second = paid_order(client, keys, email="bea@example.com")
    order_paid(shop, first["id"])
    order_paid(shop, second["id"])
    send_all(shop)

    for role in ("storefront", "analyst"):
        assert client.get("/v1/emails", headers=keys.headers(role)).status_code == 403
    for role in ("ops", "admin"):
        assert client.get("/v1/emails", headers=keys.headers(role)).status_code == 200
    listed = client.get(f"/v1/emails?order={second['id']}", headers=keys.headers("ops")).json()
    assert listed["object"] == "list" and listed["has_more"] is False
    # the second order's two: its invoice (queued last, so listed first), its confirmation
    assert [e["kind"] for e in listed["data"]] == [INVOICE, CONFIRMATION]
    assert {e["order"] for e in listed["data"]} == {second["id"]}
    item = listed["data"][1]
    assert set(item) == {
        "id",
        "object",
        "kind",
        "to",
        "subject",
        "status",
        "attempts",
        "sent_at",
        "order",
    }
    assert (item["object"], item["kind"], item["to"], item["status"], item["attempts"]) == (
        "email",
        "order_confirmation",
        "bea@example.com",
        "sent",
        1,
    )
    assert item["order"] == second["id"] and second["number"] in item["subject"]
    assert datetime.fromisoformat(item["sent_at"])
    # every order has two e-mails (its confirmation and its invoice): pages of two
    page = client.get("/v1/emails?limit=2", headers=keys.headers("ops")).json()
    assert page["has_more"] is True
    assert [e["order"] for e in page["data"]] == [second["id"]] * 2
    rest = client.get(
        f"/v1/emails?limit=2&starting_after={page['data'][-1]['id']}", headers=keys.headers("ops")
    ).json()
    assert [e["order"] for e in rest["data"]] == [first["id"]] * 2 and rest["has_more"] is False
    nothing = client.get("/v1/emails?order=ord_none", headers=keys.headers("admin")).json()
    assert nothing["data"] == []


def test_metrics_count_the_emails_by_kind_and_status(
    shop: Kassa, client: TestClient, keys: Keys, server: Recorder
) -> None:
    # sent in the order queued: the first order's confirmation and invoice, then the
    # second's confirmation (refused for good) and invoice
    server.replies = ["250 OK", "250 OK", "550 5.1.1 no such mailbox", "250 OK"]
    for email in (BUYER, "nobody@example.com"):
        order_paid(shop, paid_order(client, keys, email=email)["id"])
    assert send_all(shop) == 4
    assert {(row.recipient, row.status) for row in of_kind(shop, CONFIRMATION)} == {
        (BUYER, "sent"),
        ("nobody@example.com", "failed"),
    }
    scrape = client.get("/metrics", headers=keys.headers("ops"))
    assert scrape.status_code == 200
    lines = scrape.text.splitlines()
    assert 'kassa_emails{kind="order_confirmation",status="sent"} 1.0' in lines
    assert 'kassa_emails{kind="order_confirmation",status="failed"} 1.0' in lines
    assert 'kassa_emails{kind="invoice",status="sent"} 2.0' in lines
    assert 'kassa_emails{kind="invoice",status="queued"} 0.0' in lines  # every pair, 0 too
    assert 'kassa_emails{kind="refund_notice",status="sent"} 0.0' in lines


def test_a_database_hiccup_after_the_server_took_it_is_waited_out(
    shop: Kassa,
    client: TestClient,
    keys: Keys,
    server: Recorder,
    sleeps: Sleeps,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    order = paid_order(client, keys)
    order_paid(shop, order["id"])
    real = shop.emails._mark_sent_once
    failures = [StorageError("the database is restarting")] * 2

    def flaky(email: Any) -> None:
        if failures:
            raise failures.pop()
        real(email)

    monkeypatch.setattr(shop.emails, "_mark_sent_once", flaky)
    assert send_all(shop) == 2  # the confirmation (marked at the third try), the invoice
    row = the(shop, CONFIRMATION)
    assert row.status == "sent" and sleeps.seconds == [0.5, 1.0]
    assert len(carrying(server, row)) == 1  # not sent again while the database was away
    assert the(shop, INVOICE).status == "sent" and len(server.received) == 2
