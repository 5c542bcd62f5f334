"""E-mail to the buyer: queued from kassa's events, sent by the worker, each exactly once.

**Queueing** (`consume`, an `EventConsumer`): in the dispatcher's transaction, `order.paid`
queues an order confirmation, `invoice.issued` the invoice, `credit_note.issued` a refund
notice, for an order that has an e-mail address. The row is inserted `ON CONFLICT DO
NOTHING` on (kind, subject_id): the same event handed on twice, or two hundred
`order.paid` for one order, leave one message. Without SMTP configured the consumer is
not registered (bootstrap) and nothing is queued.

**Sending** (`send_one`, the worker's mail sender threads), one message at a time:

1. *Claim* (one statement, committed): the soonest due queued row not under a live lease
   (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so senders side by side never take the same
   one), leased to this sender, `attempts + 1`. The attempt is recorded before anything
   is sent; the Message-ID was fixed when the row was queued (`<eml_…@kassa>`).
2. *Connect and give the envelope* (MAIL FROM, RCPT TO). Nothing deliverable has left yet.
3. *Mark the hand-over* (committed): `handed_over_at`, only while this sender still holds
   the lease; a sender that lost its lease stops here, without DATA.
4. *DATA*, then mark `sent` (or the failure).

**A sender that dies** (or loses the database) between 3 and 4 leaves a queued row with
`handed_over_at` set: the server may have accepted the message. Such a row is **not sent
again**: once its lease runs out the next claim marks it `failed` ("outcome unknown"),
for an operator to look at. We chose at-most-once here because the contract says a
worker crash never sends a message twice, and because receivers' deduplication by
Message-ID cannot be relied on (many mailbox providers show both copies). A sender that
dies before 3 (connecting, or refused at the envelope) delivered nothing: its row is
claimed again once the lease runs out and sent then. The same holds for a reply that
never came to DATA (a timeout, a dropped connection): `UnknownOutcome`, failed, not
resent. A row is `sent` only after the server's 250 to DATA, and a sent row is never
claimed again.

**Failures**: a temporary one (4xx, connection refused, timeout before DATA) is retried
after 1, 2, 4, … minutes (at most an hour apart), `MAX_ATTEMPTS` tries in all; a
permanent one (5xx) marks the row `failed` at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.orm import Session

from kassa.documents import document_from_json, render_pdf
from kassa.domain.ids import new_id
from kassa.mail.compose import (
    EMAIL_KINDS,
    INVOICE,
    ORDER_CONFIRMATION,
    REFUND_NOTICE,
    Attachment,
    Letter,
    LetterLine,
    compose,
    message_id_of,
    subject_of,
)
from kassa.mail.smtp import MailFailure, PermanentFailure, Transport, UnknownOutcome
from kassa.services import events as ev
from kassa.services.context import Clock
from kassa.services.dispatch import DispatchedEvent
from kassa.services.pagination import Page, paginate
from kassa.storage.database import Database, table_of
from kassa.storage.errors import StorageError
from kassa.storage.tables import Email, IssuedDocument, Order, OrderLine
from kassa.storage.upsert import unless_exists

log = logging.getLogger("kassa.emails")

QUEUED: Final = "queued"
SENT: Final = "sent"
FAILED: Final = "failed"
STATUSES: Final = (QUEUED, SENT, FAILED)
MAX_ATTEMPTS: Final = 8  # 1+2+4+8+16+32+60 minutes: about two hours of retries
BACKOFF_BASE_S: Final = 60
BACKOFF_MAX_S: Final = 3600
MARK_SENT_RETRY_S: Final = (0.5, 1.0, 2.0, 4.0)
UNKNOWN_OUTCOME: Final = (
    "outcome unknown: the sender stopped while handing the message to the SMTP server;"
    " not sent again, so the buyer never gets it twice"
)

KIND_OF_EVENT: Final = {
    ev.ORDER_PAID: ORDER_CONFIRMATION,
    ev.INVOICE_ISSUED: INVOICE,
    ev.CREDIT_NOTE_ISSUED: REFUND_NOTICE,
}

_EMAILS, _ORDERS, _DOCUMENTS = table_of(Email), table_of(Order), table_of(IssuedDocument)


def backoff_s(attempts: int) -> int:
    """The wait after the `attempts`-th try failed for a temporary reason."""
    return int(min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** max(0, attempts - 1)))


@dataclass(frozen=True, slots=True)
class EmailView:
    """An e-mail as `GET /v1/emails` shows it."""

    id: str
    kind: str
    to: str
    subject: str
    status: str
    attempts: int
    sent_at: datetime | None
    order: str

    @classmethod
    def of(cls, row: Email) -> EmailView:
        return cls(
            id=row.id,
            kind=row.kind,
            to=row.recipient,
            subject=row.subject,
            status=row.status,
            attempts=row.attempts,
            sent_at=row.sent_at,
            order=row.order_id,
        )


@dataclass(frozen=True, slots=True)
class Seller:
    """Who the e-mails are from, as the documents name the seller."""

    name: str
    email: str | None = None
    locale: str = "en_US"


@dataclass(frozen=True, slots=True)
class Claimed:
    pk: int
    id: str
    kind: str
    subject_id: str
    order_id: str
    recipient: str
    subject: str
    attempts: int
    message_id: str


class Emails:
    """The buyer's e-mails: an `EventConsumer` (queueing), the sender's steps, the list."""

    name = "emails"

    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        seller: Seller,
        transport: Transport | None = None,
        sender: str | None = None,
        lease_s: float = 600.0,
        render: Callable[[Any], bytes] = render_pdf,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._db = db
        self._clock = clock
        self._seller = seller
        self.transport = transport
        self.sender = sender
        self._lease = timedelta(seconds=lease_s)
        self._render_pdf = render
        self._sleep = sleep
        self._sqlite = db.is_sqlite

    @property
    def enabled(self) -> bool:
        return self.transport is not None and bool(self.sender)

    # -- queueing (the dispatcher's transaction) ---------------------------------------

    def idle_when(self) -> None:
        """Every paid order, invoice and credit note may mean an e-mail: never idle (this
        consumer is registered only when SMTP is configured)."""
        return None

    def consume(self, session: Session, events: Sequence[DispatchedEvent], now: datetime) -> None:
        """Queue the message each event calls for, once per (kind, subject), in the
        dispatcher's transaction (module docs). An order without an e-mail gets none."""
        wanted: dict[tuple[str, str], None] = {}
        for event in events:
            kind = KIND_OF_EVENT.get(event.view.type)
            subject = (event.view.data.get("object") or {}).get("id")
            if kind is not None and isinstance(subject, str):
                wanted[(kind, subject)] = None
        if not wanted:
            return
        rows = self._addressed(session, list(wanted))
        if rows:
            session.execute(
                unless_exists(session, Email, {}, ["kind", "subject_id"]),
                [self._row(kind, subject, found, now) for (kind, subject), found in rows.items()],
            )

    @staticmethod
    def _row(kind: str, subject: str, found: Any, now: datetime) -> dict[str, Any]:
        email_id = new_id("eml")
        return {
            "id": email_id,
            "kind": kind,
            "subject_id": subject,
            "order_id": found.order_id,
            "recipient": found.email,
            "subject": subject_of(kind, found.order_number, found.document_number),
            "status": QUEUED,
            "attempts": 0,
            "next_attempt_at": now,
            "message_id": message_id_of(email_id),
            "created_at": now,
        }

    @staticmethod
    def _addressed(session: Session, wanted: list[tuple[str, str]]) -> dict[tuple[str, str], Any]:
        """Each wanted (kind, subject) whose order has an e-mail: its order id, number and
        address, and the document's number; two statements for the whole batch."""
        found: dict[tuple[str, str], Any] = {}
        orders = sorted({s for k, s in wanted if k == ORDER_CONFIRMATION})
        documents = sorted({s for k, s in wanted if k != ORDER_CONFIRMATION})
        if orders:
            for row in session.execute(
                select(
                    _ORDERS.c.id.label("order_id"),
                    _ORDERS.c.number.label("order_number"),
                    _ORDERS.c.email,
                ).where(_ORDERS.c.id.in_(orders), _ORDERS.c.email.is_not(None))
            ):
                found[(ORDER_CONFIRMATION, row.order_id)] = _Found(
                    row.order_id, row.order_number or row.order_id, row.email, None
                )
        if documents:
            for doc in session.execute(
                select(
                    _DOCUMENTS.c.id,
                    _DOCUMENTS.c.kind,
                    _DOCUMENTS.c.number,
                    _ORDERS.c.id.label("order_id"),
                    _ORDERS.c.number.label("order_number"),
                    _ORDERS.c.email,
                )
                .join(_ORDERS, _ORDERS.c.id == _DOCUMENTS.c.order_id)
                .where(_DOCUMENTS.c.id.in_(documents), _ORDERS.c.email.is_not(None))
            ):
                kind = INVOICE if doc.kind == "invoice" else REFUND_NOTICE
                found[(kind, doc.id)] = _Found(
                    doc.order_id, doc.order_number or doc.order_id, doc.email, doc.number
                )
        return {key: found[key] for key in wanted if key in found and found[key].email.strip()}

    # -- sending (the worker's mail sender) ---------------------------------------------

    def send_one(self, owner: str) -> bool:
        """Claim the next due message and try to send it; False if none was due."""
        if self.transport is None or not self.sender:
            return False
        claimed = self.claim(owner)
        if claimed is None:
            # idle: settle the messages of senders that died mid-send (never claimed, so
            # they hold up nothing meanwhile); one statement, not one per message sent
            self.give_up_interrupted()
            return False
        self._attempt(claimed, owner, self.transport, self.sender)
        return True

    def give_up_interrupted(self) -> int:
        """Mark `failed` every queued message whose sender died while handing it over
        (its lease ran out with `handed_over_at` set): never sent twice (module docs)."""
        now = self._clock()
        with self._db.autocommit() as session:
            result = session.execute(
                update(_EMAILS)
                .where(
                    _EMAILS.c.status == QUEUED,
                    _EMAILS.c.handed_over_at.is_not(None),
                    _EMAILS.c.lease_until < now,
                )
                .values(status=FAILED, last_error=UNKNOWN_OUTCOME, lease_owner=None)
            )
            count = int(getattr(result, "rowcount", 0) or 0)
        if count:
            log.warning("%d e-mail(s) failed: %s", count, UNKNOWN_OUTCOME)
        return count

    def claim(self, owner: str) -> Claimed | None:
        """Lease the soonest due message to `owner` and count the attempt, in one
        committed statement (module docs, step 1)."""
        now = self._clock()
        due = (
            select(_EMAILS.c.pk)
            .where(
                _EMAILS.c.status == QUEUED,
                _EMAILS.c.next_attempt_at <= now,
                _EMAILS.c.handed_over_at.is_(None),
                or_(_EMAILS.c.lease_until.is_(None), _EMAILS.c.lease_until < now),
            )
            .order_by(_EMAILS.c.next_attempt_at, _EMAILS.c.pk)
            .limit(1)
        )
        if not self._sqlite:
            due = due.with_for_update(skip_locked=True)
        with self._db.autocommit() as session:
            row = session.execute(
                update(_EMAILS)
                .where(_EMAILS.c.pk.in_(due.scalar_subquery()))
                .values(
                    lease_owner=owner,
                    lease_until=now + self._lease,
                    attempts=_EMAILS.c.attempts + 1,
                )
                .returning(
                    _EMAILS.c.pk,
                    _EMAILS.c.id,
                    _EMAILS.c.kind,
                    _EMAILS.c.subject_id,
                    _EMAILS.c.order_id,
                    _EMAILS.c.recipient,
                    _EMAILS.c.subject,
                    _EMAILS.c.attempts,
                    _EMAILS.c.message_id,
                )
            ).first()
        return None if row is None else Claimed(**row._mapping)

    def _attempt(self, email: Claimed, owner: str, transport: Transport, sender: str) -> None:
        try:
            message = compose(
                self._letter(email),
                sender=sender,
                recipient=email.recipient,
                subject=email.subject,
                message_id=email.message_id,
                date=self._clock(),
            )
        except Exception as exc:  # a message that cannot be written will not be later
            log.exception("e-mail %s cannot be composed", email.id)
            self._failed(email, PermanentFailure(f"cannot be composed: {exc}"))
            return
        try:
            connection = transport.open(sender, email.recipient)
        except MailFailure as exc:
            self._failed(email, exc)
            return
        try:
            if not self.mark_handed_over(email, owner):
                log.warning("e-mail %s: lease lost before DATA; another sender has it", email.id)
                return
            reply = connection.hand_over(message)
        except MailFailure as exc:
            self._failed(email, exc)
            return
        finally:
            connection.close()
        self.mark_sent(email)
        log.info("e-mail %s sent (%s) to the SMTP server: %s", email.id, email.kind, reply)

    def mark_handed_over(self, email: Claimed, owner: str) -> bool:
        """Step 3: committed before DATA, only while `owner` still holds the lease."""
        now = self._clock()
        with self._db.autocommit() as session:
            result = session.execute(
                update(_EMAILS)
                .where(
                    _EMAILS.c.pk == email.pk,
                    _EMAILS.c.status == QUEUED,
                    _EMAILS.c.lease_owner == owner,
                    _EMAILS.c.lease_until > now,
                )
                .values(handed_over_at=now)
            )
            return bool(getattr(result, "rowcount", 0))

    def mark_sent(self, email: Claimed) -> None:
        """The server took it (250 to DATA): sent, whoever holds the row now. A database
        that fails just then is asked again for a few seconds (`MARK_SENT_RETRY_S`): a
        message left unmarked would end `failed` ("outcome unknown") though it went out."""
        for delay in (*MARK_SENT_RETRY_S, None):
            try:
                self._mark_sent_once(email)
                return
            except StorageError as exc:
                if delay is None:
                    raise
                log.warning(
                    "e-mail %s sent, not yet marked: %s; again in %s s", email.id, exc, delay
                )
                self._sleep(delay)

    def _mark_sent_once(self, email: Claimed) -> None:
        now = self._clock()
        with self._db.autocommit() as session:
            session.execute(
                update(_EMAILS)
                .where(_EMAILS.c.pk == email.pk, _EMAILS.c.status != SENT)
                .values(
                    status=SENT,
                    sent_at=now,
                    last_error=None,
                    lease_owner=None,
                    lease_until=None,
                    handed_over_at=None,
                )
            )

    def _failed(self, email: Claimed, failure: MailFailure) -> None:
        now = self._clock()
        final = isinstance(failure, PermanentFailure | UnknownOutcome)
        give_up = final or email.attempts >= MAX_ATTEMPTS
        values: dict[str, Any] = {
            "last_error": str(failure)[:2000],
            "lease_owner": None,
            "lease_until": None,
            "handed_over_at": None,
        }
        if give_up:
            values["status"] = FAILED
        else:
            values["next_attempt_at"] = now + timedelta(seconds=backoff_s(email.attempts))
        with self._db.autocommit() as session:
            session.execute(
                update(_EMAILS)
                .where(_EMAILS.c.pk == email.pk, _EMAILS.c.status == QUEUED)
                .values(**values)
            )
        log.warning(
            "e-mail %s attempt %d %s: %s",
            email.id,
            email.attempts,
            "failed for good" if give_up else "failed, retried later",
            failure,
        )

    def _letter(self, email: Claimed) -> Letter:
        """The facts of the message, read now (the order's lines, the frozen document)."""
        seller = self._seller
        with self._db.transaction(read_only=True) as session:
            order = session.execute(select(_ORDERS).where(_ORDERS.c.id == email.order_id)).one()
            number = order.number or order.id
            if email.kind == ORDER_CONFIRMATION:
                lines = session.execute(
                    select(OrderLine.title, OrderLine.quantity, OrderLine.amount)
                    .where(OrderLine.order_id == order.id)
                    .order_by(OrderLine.position)
                ).all()
                return Letter(
                    kind=ORDER_CONFIRMATION,
                    order_number=number,
                    currency=order.currency,
                    lines=tuple(LetterLine(t, q, a) for t, q, a in lines),
                    total=order.total,
                    date=order.paid_at or order.created_at,
                    seller_name=seller.name,
                    seller_email=seller.email,
                    locale=seller.locale,
                )
            content = session.scalar(
                select(_DOCUMENTS.c.content).where(_DOCUMENTS.c.id == email.subject_id)
            )
        if content is None:
            raise LookupError(f"no document {email.subject_id!r}")
        document = document_from_json(content)
        return Letter(
            kind=INVOICE if email.kind == INVOICE else REFUND_NOTICE,
            order_number=number,
            currency=document.currency,
            lines=tuple(
                LetterLine(line.description, line.quantity, line.amount) for line in document.lines
            ),
            total=document.total,
            date=document.issued_at,
            seller_name=seller.name,
            seller_email=seller.email,
            locale=document.locale,  # the document's own, as its PDF prints amounts
            document_number=document.number,
            attachment=Attachment(f"{document.number}.pdf", self._render_pdf(document)),
        )

    # -- reading -----------------------------------------------------------------------

    def list(
        self, *, limit: int, starting_after: str | None = None, order: str | None = None
    ) -> Page[EmailView]:
        """E-mails, newest first; `order`: one order's."""
        stmt: Select[Any] = select(Email)
        if order:
            stmt = stmt.where(Email.order_id == order)
        with self._db.transaction(read_only=True) as session:
            return paginate(session, Email, stmt, limit, starting_after).map(EmailView.of)

    def get(self, email_id: str) -> EmailView | None:
        with self._db.transaction(read_only=True) as session:
            row = session.scalar(select(Email).where(Email.id == email_id))
            return None if row is None else EmailView.of(row)


def email_counts(session: Session) -> dict[tuple[str, str], int]:
    """(kind, status) -> e-mails, every pair present (0 if none): for `/metrics`."""
    counts = {(kind, status): 0 for kind in EMAIL_KINDS for status in STATUSES}
    rows = session.execute(
        select(Email.kind, Email.status, func.count()).group_by(Email.kind, Email.status)
    )
    for kind, status, n in rows:
        counts[(str(kind), str(status))] = int(n)
    return counts


@dataclass(frozen=True, slots=True)
class _Found:
    order_id: str
    order_number: str
    email: str
    document_number: str | None
