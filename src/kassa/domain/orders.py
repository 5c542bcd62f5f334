"""Order rules: the status machine, refund status, line pricing. Pure, no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from kassa.domain.errors import DomainError, FieldProblem, conflict, invalid
from kassa.domain.money import MAX_AMOUNT, Money, sum_money

MAX_LINE_QUANTITY = 10_000
MAX_LINES = 100


class OrderStatus(StrEnum):
    PENDING = "pending"
    PAID = "paid"
    FULFILLED = "fulfilled"
    CANCELED = "canceled"


ALLOWED_TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING: frozenset({OrderStatus.PAID, OrderStatus.CANCELED}),
    OrderStatus.PAID: frozenset({OrderStatus.FULFILLED}),
    OrderStatus.FULFILLED: frozenset(),
    OrderStatus.CANCELED: frozenset(),
}


def can_transition(current: OrderStatus, target: OrderStatus) -> bool:
    return target in ALLOWED_TRANSITIONS[current]


def transition(current: OrderStatus, target: OrderStatus) -> OrderStatus:
    """Return `target` if the move is legal, else raise `invalid_order_transition`."""
    if not can_transition(current, target):
        raise conflict(
            "invalid_order_transition",
            f"an order that is {current.value} cannot become {target.value}",
        )
    return target


class OrderRefundStatus(StrEnum):
    NONE = "none"
    PARTIAL = "partial"
    FULL = "full"


def refund_status(amount_paid: int, amount_refunded: int) -> OrderRefundStatus:
    if amount_refunded <= 0:
        return OrderRefundStatus.NONE
    if amount_refunded >= amount_paid:
        return OrderRefundStatus.FULL
    return OrderRefundStatus.PARTIAL


class ProductStatus(StrEnum):
    """Availability of a product; unique items move available -> reserved -> sold."""

    AVAILABLE = "available"
    RESERVED = "reserved"
    SOLD = "sold"


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    """What pricing needs to know about a product at the moment of ordering."""

    sku: str
    title: str
    unit_price: Money
    stock: int | None
    unique: bool
    status: ProductStatus


@dataclass(frozen=True, slots=True)
class LineRequest:
    sku: str
    quantity: int


@dataclass(frozen=True, slots=True)
class PricedLine:
    """A line's snapshot: what the customer was shown and will pay, frozen at order time."""

    sku: str
    title: str
    unit_amount: int
    quantity: int
    amount: int
    product_status: ProductStatus


@dataclass(frozen=True, slots=True)
class PricedOrder:
    currency: str
    lines: tuple[PricedLine, ...]
    subtotal: Money
    total: Money


def price_order(
    currency: str,
    requested: Sequence[LineRequest],
    catalogue: dict[str, CatalogueEntry],
) -> PricedOrder:
    """Price an order from the catalogue alone; the client's prices are never used.

    Raises a DomainError listing every line problem found (unknown SKU, repeated
    SKU, currency mismatch, quantity rules).
    """
    if not requested:
        raise invalid(
            "validation_error",
            "an order needs at least one line",
            FieldProblem(("body", "lines"), "at least one line is required"),
        )
    if len(requested) > MAX_LINES:
        raise invalid(
            "validation_error",
            f"an order may have at most {MAX_LINES} lines",
            FieldProblem(("body", "lines"), f"at most {MAX_LINES} lines"),
        )
    problems: list[FieldProblem] = []
    code = "validation_error"
    seen: set[str] = set()
    lines: list[PricedLine] = []
    for index, req in enumerate(requested):
        loc: tuple[str | int, ...] = ("body", "lines", index)
        entry = catalogue.get(req.sku)
        if req.sku in seen:
            problems.append(FieldProblem((*loc, "sku"), f"SKU {req.sku!r} appears twice"))
            continue
        seen.add(req.sku)
        if entry is None:
            code = "unknown_sku" if code == "validation_error" else code
            problems.append(FieldProblem((*loc, "sku"), f"no product with SKU {req.sku!r}"))
            continue
        if entry.unit_price.currency != currency:
            code = "currency_mismatch"
            problems.append(
                FieldProblem(
                    (*loc, "sku"),
                    f"{req.sku!r} is priced in {entry.unit_price.currency}, "
                    f"the order is in {currency}",
                )
            )
            continue
        if not 1 <= req.quantity <= MAX_LINE_QUANTITY:
            problems.append(
                FieldProblem((*loc, "quantity"), f"quantity must be 1..{MAX_LINE_QUANTITY}")
            )
            continue
        if entry.unique and req.quantity != 1:
            problems.append(
                FieldProblem((*loc, "quantity"), f"{req.sku!r} is one of a kind: quantity 1")
            )
            continue
        amount = entry.unit_price.times(req.quantity)
        lines.append(
            PricedLine(
                sku=entry.sku,
                title=entry.title,
                unit_amount=entry.unit_price.amount,
                quantity=req.quantity,
                amount=amount.amount,
                product_status=entry.status,
            )
        )
    if problems:
        raise DomainError(code, "; ".join(p.message for p in problems), errors=problems)
    subtotal = sum_money([Money(line.amount, currency) for line in lines], currency)
    if subtotal.amount > MAX_AMOUNT:
        raise invalid(
            "amount_too_large",
            f"the order total {subtotal.amount} exceeds the maximum of {MAX_AMOUNT}",
            FieldProblem(("body", "lines"), "order total too large"),
        )
    return PricedOrder(currency=currency, lines=tuple(lines), subtotal=subtotal, total=subtotal)


def check_stock(entry: CatalogueEntry, quantity: int) -> None:
    """Refuse an order line the catalogue cannot possibly fill right now.

    Stock is only advisory at order time (it is taken when the order is paid), so
    this refuses what is plainly impossible and nothing more.
    """
    if entry.unique:
        return
    if entry.stock is not None and quantity > entry.stock:
        raise conflict(
            "insufficient_stock",
            f"{entry.sku!r} has {entry.stock} in stock, {quantity} requested",
        )


def order_number(sequence: int) -> str:
    """Human order number, e.g. K-000042."""
    return f"K-{sequence:06d}"
