"""What each e-mail to the buyer says: its subject, its text and HTML parts, its PDF.

One `Letter` (the facts: order number, lines, total, date, the document if any) gives one
`EmailMessage`: multipart/alternative text + HTML from the Jinja2 templates in
`templates/` (the HTML autoescaped, so a product title or a buyer's name from the shop
can never inject markup), wrapped in multipart/mixed with the invoice's or credit note's
PDF when there is one. Amounts go through `Money.format(locale)` (Babel) and dates
through Babel's long date format, as on the documents themselves, so the e-mail and the
PDF it carries print a total the same way.

Every subject names the order number (the contract): it is what a buyer searches their
inbox for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Final, Literal

from babel.dates import format_date
from jinja2 import Environment, PackageLoader, StrictUndefined

from kassa.domain.money import Money

EmailKind = Literal["order_confirmation", "invoice", "refund_notice"]
ORDER_CONFIRMATION: Final = "order_confirmation"
INVOICE: Final = "invoice"
REFUND_NOTICE: Final = "refund_notice"
EMAIL_KINDS: Final = (ORDER_CONFIRMATION, INVOICE, REFUND_NOTICE)


def subject_of(kind: str, order_number: str, document_number: str | None = None) -> str:
    """The subject line of a message; every one names the order number."""
    if kind == ORDER_CONFIRMATION:
        return f"Your order {order_number} is confirmed"
    if kind == INVOICE:
        return f"Invoice {document_number} for your order {order_number}"
    if kind == REFUND_NOTICE:
        return f"Refund for your order {order_number} (credit note {document_number})"
    raise ValueError(f"unknown e-mail kind {kind!r}")


def message_id_of(email_id: str) -> str:
    """The Message-ID of an e-mail: from its id alone, so every attempt to send it carries
    the same one, and a receiver that sees it twice can tell it is one message."""
    return f"<{email_id}@kassa>"


@dataclass(frozen=True, slots=True)
class LetterLine:
    description: str
    quantity: int
    amount: int  # minor units of the letter's currency


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    body: bytes
    content_type: tuple[str, str] = ("application", "pdf")


@dataclass(frozen=True, slots=True)
class Letter:
    """The facts one e-mail states (read from the database by the service)."""

    kind: EmailKind
    order_number: str
    currency: str
    lines: tuple[LetterLine, ...]
    total: int
    date: datetime  # paid (confirmation) or issued (invoice, credit note)
    seller_name: str
    locale: str = "en_US"
    seller_email: str | None = None
    document_number: str | None = None
    attachment: Attachment | None = None


@dataclass(frozen=True, slots=True)
class _LineText:
    description: str
    quantity: int
    amount: str


@dataclass(frozen=True, slots=True)
class _View:
    """Every text the two templates print, computed once so that they say the same."""

    kind: str
    heading: str
    intro: str
    order_number: str
    document_number: str | None
    date: str
    lines: tuple[_LineText, ...]
    total_label: str
    total: str
    seller_name: str
    seller_email: str | None
    attachment_name: str | None


def _view(letter: Letter) -> _View:
    def money(amount: int) -> str:
        return Money(amount, letter.currency).format(letter.locale)

    date = str(format_date(letter.date.date(), "long", locale=letter.locale))
    total = money(letter.total)
    number, document = letter.order_number, letter.document_number
    if letter.kind == ORDER_CONFIRMATION:
        heading = f"Thank you for your order {number}"
        intro = f"We received your payment of {total} on {date}. Your order:"
        total_label = "Total paid"
    elif letter.kind == INVOICE:
        heading = f"Invoice {document}"
        intro = f"Attached is invoice {document} of {date} for your order {number}."
        total_label = "Invoice total"
    else:
        heading = f"Your refund for order {number}"
        intro = (
            f"We refunded {total} for your order {number} on {date}."
            f" Attached is credit note {document}."
        )
        total_label = "Total refunded"
    return _View(
        kind=letter.kind,
        heading=heading,
        intro=intro,
        order_number=number,
        document_number=document,
        date=date,
        lines=tuple(
            _LineText(line.description, line.quantity, money(line.amount)) for line in letter.lines
        ),
        total_label=total_label,
        total=total,
        seller_name=letter.seller_name,
        seller_email=letter.seller_email,
        attachment_name=letter.attachment.filename if letter.attachment else None,
    )


_LOADER = PackageLoader("kassa.mail", "templates")
_HTML = Environment(loader=_LOADER, autoescape=True, undefined=StrictUndefined)
_TEXT = Environment(
    loader=_LOADER, autoescape=False, undefined=StrictUndefined, keep_trailing_newline=True
)


def render_text(letter: Letter) -> str:
    return _TEXT.get_template("message.txt.j2").render(mail=_view(letter))


def render_html(letter: Letter) -> str:
    return _HTML.get_template("message.html.j2").render(mail=_view(letter))


def compose(
    letter: Letter,
    *,
    sender: str,
    recipient: str,
    subject: str,
    message_id: str,
    date: datetime,
) -> EmailMessage:
    """The message as it goes to the SMTP server. Header values with a line break are
    refused by the `email` package itself, so no field can inject a header."""
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = recipient
    message["Date"] = format_datetime(date)
    message["Message-ID"] = message_id
    message.set_content(render_text(letter))
    message.add_alternative(render_html(letter), subtype="html")
    if letter.attachment is not None:
        maintype, subtype = letter.attachment.content_type
        message.add_attachment(
            letter.attachment.body,
            maintype=maintype,
            subtype=subtype,
            filename=letter.attachment.filename,
        )
    return message
