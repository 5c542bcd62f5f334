"""The data an invoice or credit note prints: plain frozen values, validated on creation.

A `Document` is a finished, self-consistent statement of amounts. It is built by the code
that issues documents (from an order or a refund) and handed to `kassa.documents.render`;
nothing here touches a database or computes prices.

Conventions:

* Every amount is an `int` of the currency's minor unit (cents, yen, fils), never a float
  and never a bool; `currency` is an ISO 4217 code (normalised to upper case).
* Prices are gross: taxes are *included* in the line amounts. Hence `total == subtotal`,
  and each `TaxLine` only states how much tax the total contains.
* Amounts are printed as they are stored. A credit note states the refunded amounts as
  positive numbers (its `kind` says which way the money goes), so a document's total is
  never negative; single lines may be negative (a discount line).
* Validation errors are programming errors of the issuing code, so they are plain
  `ValueError` / `TypeError`, not `DomainError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from babel import Locale, UnknownLocaleError

from kassa.domain.money import is_currency

DocumentKind = Literal["invoice", "credit_note"]
DOCUMENT_KINDS: frozenset[str] = frozenset(get_args(DocumentKind))


def _int(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{field} must be an int of minor units, got {type(value).__name__}")
    return value


def _text(value: object, field: str, *, required: bool = True) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{field} must be a str, got {type(value).__name__}")
    if required and not value.strip():
        raise ValueError(f"{field} must not be empty")
    return value


def _optional_text(value: object, field: str) -> None:
    if value is not None:
        _text(value, field)


@dataclass(frozen=True, slots=True)
class Party:
    """The seller or the buyer: a name, address lines, and optional tax id and e-mail."""

    name: str
    lines: tuple[str, ...] = ()
    tax_id: str | None = None
    email: str | None = None

    def __post_init__(self) -> None:
        _text(self.name, "party name")
        object.__setattr__(self, "lines", tuple(self.lines))
        for line in self.lines:
            _text(line, "party address line", required=False)
        _optional_text(self.tax_id, "party tax id")
        _optional_text(self.email, "party email")


@dataclass(frozen=True, slots=True)
class DocumentLine:
    """One printed line. `amount` is the line's gross amount as charged (or credited).

    `amount` is usually `quantity * unit_amount`, but it is not checked: a line-level
    discount is printed as the amount actually charged.
    """

    description: str
    quantity: int
    unit_amount: int
    amount: int

    def __post_init__(self) -> None:
        _text(self.description, "line description")
        if _int(self.quantity, "line quantity") < 1:
            raise ValueError(f"line quantity must be at least 1, got {self.quantity}")
        _int(self.unit_amount, "line unit_amount")
        _int(self.amount, "line amount")


@dataclass(frozen=True, slots=True)
class TaxLine:
    """Tax contained in the total: `label` (e.g. "VAT"), rate in basis points (1900 = 19 %)."""

    label: str
    rate_bp: int
    amount: int

    def __post_init__(self) -> None:
        _text(self.label, "tax label")
        if _int(self.rate_bp, "tax rate_bp") < 0:
            raise ValueError(f"tax rate must not be negative, got {self.rate_bp} bp")
        if _int(self.amount, "tax amount") < 0:
            raise ValueError(f"tax amount must not be negative, got {self.amount}")


@dataclass(frozen=True, slots=True)
class Document:
    """An invoice or a credit note, ready to render (see the module docstring)."""

    kind: DocumentKind
    number: str
    issued_at: datetime
    currency: str
    seller: Party
    buyer: Party
    lines: tuple[DocumentLine, ...]
    subtotal: int
    taxes: tuple[TaxLine, ...]
    total: int
    reference: str | None = None
    notes: str | None = None
    locale: str = "en_US"

    def __post_init__(self) -> None:
        if self.kind not in DOCUMENT_KINDS:
            raise ValueError(f"kind must be one of {sorted(DOCUMENT_KINDS)}, got {self.kind!r}")
        _text(self.number, "document number")
        self._check_issued_at()
        self._check_currency_and_locale()
        if not isinstance(self.seller, Party) or not isinstance(self.buyer, Party):
            raise TypeError("seller and buyer must be Party instances")
        object.__setattr__(self, "lines", tuple(self.lines))
        object.__setattr__(self, "taxes", tuple(self.taxes))
        if not self.lines:
            raise ValueError("a document needs at least one line")
        if not all(isinstance(line, DocumentLine) for line in self.lines):
            raise TypeError("lines must be DocumentLine instances")
        if not all(isinstance(tax, TaxLine) for tax in self.taxes):
            raise TypeError("taxes must be TaxLine instances")
        self._check_amounts()
        _optional_text(self.reference, "reference")
        if self.notes is not None:
            _text(self.notes, "notes", required=False)

    def _check_issued_at(self) -> None:
        if not isinstance(self.issued_at, datetime):
            raise TypeError(f"issued_at must be a datetime, got {type(self.issued_at).__name__}")
        if self.issued_at.tzinfo is None or self.issued_at.utcoffset() is None:
            raise ValueError("issued_at must be timezone-aware")
        object.__setattr__(self, "issued_at", self.issued_at.astimezone(UTC))

    def _check_currency_and_locale(self) -> None:
        if not isinstance(self.currency, str) or not is_currency(self.currency):
            raise ValueError(f"{self.currency!r} is not an ISO 4217 currency code")
        object.__setattr__(self, "currency", self.currency.strip().upper())
        try:
            Locale.parse(_text(self.locale, "locale"))
        except (UnknownLocaleError, ValueError) as error:
            raise ValueError(f"unknown locale {self.locale!r}") from error

    def _check_amounts(self) -> None:
        subtotal = _int(self.subtotal, "subtotal")
        total = _int(self.total, "total")
        lines_sum = sum(line.amount for line in self.lines)
        if lines_sum != subtotal:
            raise ValueError(f"subtotal {subtotal} does not equal the sum of the lines {lines_sum}")
        if total != subtotal:
            raise ValueError(
                f"total {total} must equal subtotal {subtotal}: prices include their taxes"
            )
        if total < 0:
            raise ValueError(
                f"total must not be negative, got {total}; a credit note states the "
                "refunded amount as a positive number"
            )
        tax_sum = sum(tax.amount for tax in self.taxes)
        if tax_sum > total:
            raise ValueError(f"the included taxes {tax_sum} exceed the total {total}")

    @property
    def title(self) -> str:
        """ "Invoice INV-2026-000001" or "Credit note CN-2026-000001"."""
        label = "Invoice" if self.kind == "invoice" else "Credit note"
        return f"{label} {self.number}"


# --------------------------------------------------------------------------- storage form


def document_to_json(doc: Document) -> dict[str, Any]:
    """The document as plain JSON values: what an issued document stores, frozen."""

    def party(p: Party) -> dict[str, Any]:
        return {"name": p.name, "lines": list(p.lines), "tax_id": p.tax_id, "email": p.email}

    return {
        "kind": doc.kind,
        "number": doc.number,
        "issued_at": doc.issued_at.isoformat(),
        "currency": doc.currency,
        "seller": party(doc.seller),
        "buyer": party(doc.buyer),
        "lines": [
            {
                "description": line.description,
                "quantity": line.quantity,
                "unit_amount": line.unit_amount,
                "amount": line.amount,
            }
            for line in doc.lines
        ],
        "subtotal": doc.subtotal,
        "taxes": [
            {"label": tax.label, "rate_bp": tax.rate_bp, "amount": tax.amount} for tax in doc.taxes
        ],
        "total": doc.total,
        "reference": doc.reference,
        "notes": doc.notes,
        "locale": doc.locale,
    }


def document_from_json(data: dict[str, Any]) -> Document:
    """Rebuild (and re-validate) a document stored by `document_to_json`."""

    def party(p: dict[str, Any]) -> Party:
        return Party(name=p["name"], lines=tuple(p["lines"]), tax_id=p["tax_id"], email=p["email"])

    return Document(
        kind=data["kind"],
        number=data["number"],
        issued_at=datetime.fromisoformat(data["issued_at"]),
        currency=data["currency"],
        seller=party(data["seller"]),
        buyer=party(data["buyer"]),
        lines=tuple(DocumentLine(**line) for line in data["lines"]),
        subtotal=data["subtotal"],
        taxes=tuple(TaxLine(**tax) for tax in data["taxes"]),
        total=data["total"],
        reference=data["reference"],
        notes=data["notes"],
        locale=data["locale"],
    )
