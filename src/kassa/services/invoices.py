"""Invoices and credit notes: numbered gap-free, never changed.

An order's invoice is issued in the transaction that pays the order
(`settlement.payment_succeeded` calls `invoice_paid_order`), so an order is paid if and
only if it has its invoice: there is no moment, and no crash, in which a paid order waits
for one. A refund succeeding enqueues `documents.issue_credit_note` in the transaction of
that state change, and the worker issues the credit note. Either way the issuing
transaction allocates the next number of the series and year from its counter row (an
UPDATE that holds the row lock until commit) and inserts the document: if anything fails,
both roll back, so a number is never skipped, and concurrent issuers queue on the counter
row instead of taking the same number. Unique constraints (one invoice per order, one
credit note per refund) make a second issue of the same document fail rather than double.

What it costs: the invoice counter's row lock is held from the invoice's allocation to
the commit of the payment's settlement (its last statements), so settlements of the same
year queue there for that long. The invoice job it replaced (issue 10) cost a job's
claim, transaction and bookkeeping per paid order, more than the lock wait at any rate
measured (see bench/README.md). `documents.issue_invoice` jobs still run: one enqueued by
an earlier version of kassa is honoured, and issues nothing for an order already invoiced.

The stored `content` is the complete document as printed (seller, buyer, lines, taxes,
locale), frozen when issued: a later change of seller details or tax configuration
never alters an issued document, and the HTML and PDF are rendered from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Select, bindparam, exists, select
from sqlalchemy.orm import Session

from kassa.documents import (
    Document,
    DocumentKind,
    DocumentLine,
    Party,
    TaxLine,
    document_from_json,
    document_to_json,
    render_html,
    render_pdf,
)
from kassa.domain.documents import Series, format_number, included_tax
from kassa.domain.errors import not_found
from kassa.domain.ids import new_id
from kassa.domain.refunds import RefundStatus
from kassa.services import audit, events
from kassa.services.context import Clock, RequestContext
from kassa.services.jobs import RetryLater, enqueue
from kassa.services.pagination import ANY_TIME, CreatedRange, Page, paginate
from kassa.storage.database import Database, table_of
from kassa.storage.deferred import defer
from kassa.storage.tables import (
    Customer,
    DocumentCounter,
    IssuedDocument,
    Order,
    OrderLine,
    Refund,
)
from kassa.storage.upsert import increment

ISSUE_INVOICE = "documents.issue_invoice"
# Where the API serves each kind (the resource's `pdf_url` and `html_url` point there).
DOCUMENT_PATHS: dict[str, str] = {"invoice": "/v1/invoices", "credit_note": "/v1/credit-notes"}
# What the API shows of the frozen document itself, beside the row's own columns.
_SHOWN_CONTENT = (
    "number",
    "currency",
    "seller",
    "buyer",
    "lines",
    "taxes",
    "reference",
    "notes",
    "locale",
)
ISSUE_CREDIT_NOTE = "documents.issue_credit_note"
INVOICE: DocumentKind = "invoice"
CREDIT_NOTE: DocumentKind = "credit_note"


def request_credit_note(session: Session, refund_id: str, now: datetime) -> None:
    """Ask the worker for a refund's credit note, inside the transaction it succeeded in."""
    enqueue(session, ISSUE_CREDIT_NOTE, {"refund": refund_id}, now)


def allocate_number(session: Session, series: Series, year: int) -> int:
    """The next number of a series and year, taken under the counter row's lock: it stays
    locked until the caller's transaction ends, and a rollback returns the number."""
    return increment(
        session, DocumentCounter, {"series": series.value, "year": year}, "last_number"
    )


@dataclass(frozen=True, slots=True)
class SellerProfile:
    """Who issues the documents, and the tax their prices include (from configuration)."""

    party: Party
    locale: str = "en_US"
    tax_label: str = "VAT"
    tax_rate_bp: int | None = None


@dataclass(frozen=True, slots=True)
class PaidOrder:
    """What an order's invoice bills: the order as the transaction that paid it read it."""

    id: str
    number: str | None
    currency: str
    shipping_address: dict[str, Any] | None
    customer_id: str | None
    email: str | None
    paid_at: datetime
    lines: tuple[DocumentLine, ...]


def invoice_line(
    title: str, sku: str, quantity: int, unit_amount: int, amount: int
) -> DocumentLine:
    """An order line as its invoice prints it."""
    return DocumentLine(
        description=f"{title} ({sku})", quantity=quantity, unit_amount=unit_amount, amount=amount
    )


@dataclass(frozen=True, slots=True)
class DocumentFile:
    """A rendered document, named by its number."""

    number: str
    body: bytes


@dataclass(frozen=True, slots=True)
class DocumentView:
    id: str
    kind: str
    number: str
    order_id: str
    refund_id: str | None
    currency: str
    total: int
    tax: int
    issued_at: datetime
    content: dict[str, Any]

    @classmethod
    def of(cls, row: IssuedDocument) -> DocumentView:
        return cls(
            id=row.id,
            kind=row.kind,
            number=row.number,
            order_id=row.order_id,
            refund_id=row.refund_id,
            currency=row.currency,
            total=row.total,
            tax=row.tax,
            issued_at=row.issued_at,
            content=dict(row.content),
        )

    @property
    def document(self) -> Document:
        return document_from_json(self.content)

    def resource(self) -> dict[str, Any]:
        """The document as the API's JSON shows it (`GET /v1/invoices/{id}`): what
        `invoice.issued` and `credit_note.issued` carry, and what the API answers."""
        base = f"{DOCUMENT_PATHS[self.kind]}/{self.id}"
        return {
            "id": self.id,
            "object": self.kind,
            **{name: self.content.get(name) for name in _SHOWN_CONTENT},
            "order": self.order_id,
            "refund": self.refund_id,
            "total": self.total,
            "tax": self.tax,
            "issued_at": events.json_time(self.issued_at),
            "pdf_url": base + ".pdf",
            "html_url": base + ".html",
        }


# The order with its lines and whether it has its invoice already, in one statement (a
# join and an EXISTS) instead of three: a row per line, in the order's own line order,
# each carrying the order's columns. Core and built once (the invoice job's only read;
# an order paid since is invoiced from the paying transaction's own read of it).
_ORDERS, _LINES, _DOCUMENTS = table_of(Order), table_of(OrderLine), table_of(IssuedDocument)
_ORDER_TO_INVOICE = (
    select(
        _ORDERS.c.id,
        _ORDERS.c.number,
        _ORDERS.c.currency,
        _ORDERS.c.paid_at,
        _ORDERS.c.shipping_address,
        _ORDERS.c.customer_id,
        _ORDERS.c.email,
        exists()
        .where(_DOCUMENTS.c.invoiced_order_id == _ORDERS.c.id)
        .correlate(_ORDERS)
        .label("invoiced"),
        _LINES.c.title,
        _LINES.c.sku,
        _LINES.c.quantity,
        _LINES.c.unit_amount,
        _LINES.c.amount,
    )
    .select_from(_ORDERS.outerjoin(_LINES, _LINES.c.order_id == _ORDERS.c.id))
    .where(_ORDERS.c.id == bindparam("order_id"))
    .order_by(_LINES.c.position)
)


class _BilledOrder(Protocol):
    """What a document says of its order: an ORM `Order`, or a `PaidOrder`."""

    @property
    def id(self) -> str: ...
    @property
    def number(self) -> str | None: ...
    @property
    def currency(self) -> str: ...
    @property
    def shipping_address(self) -> dict[str, Any] | None: ...
    @property
    def customer_id(self) -> str | None: ...
    @property
    def email(self) -> str | None: ...


class Invoices:
    def __init__(self, db: Database, clock: Clock, seller: SellerProfile) -> None:
        self._db = db
        self._clock = clock
        self._seller = seller

    # -- issuing (in the caller's transaction) -----------------------------------------

    def invoice_paid_order(self, session: Session, order: PaidOrder, now: datetime) -> None:
        """Issue the invoice of an order this transaction has just paid."""
        self._issue(
            session,
            order,
            now,
            kind=INVOICE,
            series=Series.INVOICE,
            lines=order.lines,
            total=sum(line.amount for line in order.lines),
            tax_rate_bp=self._seller.tax_rate_bp,
            reference=f"Order {order.number or order.id}, paid {order.paid_at.date()}",
            notes=None,
            refund_id=None,
        )

    # -- job handlers: they run in the job's transaction ----------------------------------

    def issue_invoice(self, session: Session, payload: dict[str, Any]) -> None:
        """`documents.issue_invoice`, as earlier versions enqueued it when an order was
        paid: a no-op for an order already invoiced (every order paid since)."""
        order_id = str(payload["order"])
        rows = session.execute(_ORDER_TO_INVOICE, {"order_id": order_id}).all()
        if not rows:
            raise LookupError(f"no order {order_id!r} to invoice")
        order = rows[0]
        if order.invoiced:
            return
        if order.paid_at is None:
            return  # never paid (the job outlived a rollback it cannot see): nothing to bill
        lines = tuple(
            invoice_line(line.title, line.sku, line.quantity, line.unit_amount, line.amount)
            for line in rows
            if line.sku is not None  # the outer join's row of an order without lines
        )
        paid = PaidOrder(
            id=order.id,
            number=order.number,
            currency=order.currency,
            shipping_address=order.shipping_address,
            customer_id=order.customer_id,
            email=order.email,
            paid_at=order.paid_at,
            lines=lines,
        )
        self.invoice_paid_order(session, paid, self._clock())

    def issue_credit_note(self, session: Session, payload: dict[str, Any]) -> None:
        refund_id = str(payload["refund"])
        if self._issued(session, IssuedDocument.refund_id == refund_id):
            return
        refund = session.scalar(select(Refund).where(Refund.id == refund_id))
        if refund is None:
            raise LookupError(f"no refund {refund_id!r} to credit")
        if refund.status != RefundStatus.SUCCEEDED:
            return
        order = session.scalar(select(Order).where(Order.id == refund.order_id))
        assert order is not None
        invoice = session.scalar(
            select(IssuedDocument).where(IssuedDocument.invoiced_order_id == order.id)
        )
        if invoice is None and order.paid_at is not None:
            # The credit note corrects the invoice, so it waits for it: an order paid
            # by an earlier version of kassa may still have its invoice job queued.
            raise RetryLater(f"order {order.id} has no invoice yet")
        reference = f"Order {order.number or order.id}"
        tax_rate_bp = self._seller.tax_rate_bp
        if invoice is not None:
            reference = f"Credit for invoice {invoice.number}; {reference}"
            taxes = invoice.content.get("taxes") or []
            tax_rate_bp = taxes[0]["rate_bp"] if taxes else None  # the invoice's own rate
        self._issue(
            session,
            order,
            self._clock(),
            kind=CREDIT_NOTE,
            series=Series.CREDIT_NOTE,
            lines=(
                DocumentLine(
                    description=f"Refund of order {order.number or order.id}"
                    + (" to the customer's wallet" if refund.destination == "wallet" else ""),
                    quantity=1,
                    unit_amount=refund.amount,
                    amount=refund.amount,
                ),
            ),
            total=refund.amount,
            tax_rate_bp=tax_rate_bp,
            reference=reference,
            notes=refund.reason,
            refund_id=refund.id,
        )

    @staticmethod
    def _issued(session: Session, condition: Any) -> bool:
        return session.scalar(select(IssuedDocument.pk).where(condition)) is not None

    def _issue(
        self,
        session: Session,
        order: _BilledOrder,
        now: datetime,
        *,
        kind: DocumentKind,
        series: Series,
        lines: tuple[DocumentLine, ...],
        total: int,
        tax_rate_bp: int | None,
        reference: str,
        notes: str | None,
        refund_id: str | None,
    ) -> None:
        sequence = allocate_number(session, series, now.year)
        number = format_number(series, now.year, sequence)
        taxes = (
            (TaxLine(self._seller.tax_label, tax_rate_bp, included_tax(total, tax_rate_bp)),)
            if tax_rate_bp
            else ()
        )
        document = Document(
            kind=kind,
            number=number,
            issued_at=now,
            currency=order.currency,
            seller=self._seller.party,
            buyer=self._buyer(session, order),
            lines=lines,
            subtotal=total,
            taxes=taxes,
            total=total,
            reference=reference,
            notes=notes or None,
            locale=self._seller.locale,
        )
        document_id = new_id("inv" if kind == INVOICE else "cn")
        issued = DocumentView(
            id=document_id,
            kind=kind,
            number=number,
            order_id=order.id,
            refund_id=refund_id,
            currency=order.currency,
            total=total,
            tax=sum(tax.amount for tax in taxes),
            issued_at=now,
            content=document_to_json(document),
        )
        # written at commit, in the statement of the transaction's other deferred rows:
        # nothing reads it back before (its unique constraints still hold it to one)
        defer(
            session,
            IssuedDocument,
            {
                "id": document_id,
                "kind": kind,
                "series": series.value,
                "year": now.year,
                "sequence": sequence,
                "number": number,
                "order_id": order.id,
                "invoiced_order_id": order.id if kind == INVOICE else None,
                "refund_id": refund_id,
                "currency": issued.currency,
                "total": total,
                "tax": issued.tax,
                "content": issued.content,
                "issued_at": now,
            },
        )
        issued_event = events.INVOICE_ISSUED if kind == INVOICE else events.CREDIT_NOTE_ISSUED
        events.record(session, issued_event, issued.resource(), now)
        audit.record(
            session,
            RequestContext.system("worker"),
            at=now,
            action=f"{kind}.issued",
            subject=document_id,
            after={"number": number, "order": order.id, "refund": refund_id, "total": total},
        )

    @staticmethod
    def _buyer(session: Session, order: _BilledOrder) -> Party:
        address = [
            str(value)
            for value in (order.shipping_address or {}).values()
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip()
        ]
        customer = (
            session.scalar(select(Customer).where(Customer.id == order.customer_id))
            if order.customer_id
            else None
        )
        email = customer.email if customer is not None else order.email
        name = (customer.name if customer is not None else None) or email or order.id
        return Party(name=name, lines=tuple(address), email=email)

    # -- reading ------------------------------------------------------------------------

    @staticmethod
    def _order_visible(session: Session, ctx: RequestContext, order_id: str | None) -> bool:
        """A storefront key reads the documents of the orders it created, no others."""
        if order_id is None:
            return False
        owner = session.execute(
            select(Order.created_by_key).where(Order.id == order_id)
        ).one_or_none()
        return owner is not None and ctx.may_see(owner.created_by_key)

    def get(self, ctx: RequestContext, document_id: str, kind: str) -> DocumentView:
        with self._db.transaction(read_only=True) as session:
            row = session.scalar(
                select(IssuedDocument).where(
                    IssuedDocument.id == document_id, IssuedDocument.kind == kind
                )
            )
            if row is None or not self._order_visible(session, ctx, row.order_id):
                raise not_found(f"{kind}_not_found", f"no {kind.replace('_', ' ')} {document_id!r}")
            return DocumentView.of(row)

    def invoice_of(self, ctx: RequestContext, order_id: str) -> DocumentView:
        with self._db.transaction(read_only=True) as session:
            if not self._order_visible(session, ctx, order_id):
                raise not_found("order_not_found", f"no order {order_id!r}")
            row = session.scalar(
                select(IssuedDocument).where(IssuedDocument.invoiced_order_id == order_id)
            )
            if row is None:
                raise not_found(
                    "invoice_not_found",
                    f"order {order_id!r} has no invoice (it is issued once the order is paid)",
                )
            return DocumentView.of(row)

    def credit_notes_of(self, ctx: RequestContext, order_id: str) -> list[DocumentView]:
        with self._db.transaction(read_only=True) as session:
            if not self._order_visible(session, ctx, order_id):
                raise not_found("order_not_found", f"no order {order_id!r}")
            rows = session.scalars(
                select(IssuedDocument)
                .where(IssuedDocument.order_id == order_id, IssuedDocument.kind == CREDIT_NOTE)
                .order_by(IssuedDocument.pk)
            ).all()
            return [DocumentView.of(row) for row in rows]

    def list(
        self,
        kind: str,
        *,
        limit: int,
        starting_after: str | None = None,
        order: str | None = None,
        created: CreatedRange = ANY_TIME,
    ) -> Page[DocumentView]:
        """Invoices or credit notes, newest first; `created` filters on `issued_at`."""
        of_kind = IssuedDocument.kind == kind
        stmt: Select[Any] = created.apply(
            select(IssuedDocument).where(of_kind), IssuedDocument.issued_at
        )
        if order:
            stmt = stmt.where(IssuedDocument.order_id == order)
        with self._db.transaction(read_only=True) as session:
            page = paginate(session, IssuedDocument, stmt, limit, starting_after, of_kind)
            return page.map(DocumentView.of)

    def html(self, ctx: RequestContext, document_id: str, kind: str) -> str:
        return render_html(self.get(ctx, document_id, kind).document)

    def pdf(self, ctx: RequestContext, document_id: str, kind: str) -> DocumentFile:
        view = self.get(ctx, document_id, kind)
        return DocumentFile(view.number, render_pdf(view.document))
