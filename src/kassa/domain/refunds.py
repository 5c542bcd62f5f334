"""Refund rules: what may be refunded, and how a refund splits across payments. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from kassa.domain.errors import FieldProblem, conflict, invalid


class RefundStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class RefundDestination(StrEnum):
    """Where a refund's money goes: back to the card (or other method), or to the wallet."""

    ORIGINAL = "original"
    WALLET = "wallet"


def refund_amount(amount_paid: int, committed: int, requested: int | None) -> int:
    """The amount to refund now.

    `committed` is what is already refunded or being refunded. With no `requested` amount,
    everything still refundable. Raises `order_not_paid`, `order_already_refunded` or
    `amount_exceeds_refundable` (for amounts <= 0 too, per the contract)."""
    if amount_paid <= 0:
        raise conflict("order_not_paid", "nothing has been paid for this order")
    remaining = amount_paid - committed
    if remaining <= 0:
        raise conflict("order_already_refunded", "everything paid has been refunded")
    amount = remaining if requested is None else requested
    if amount <= 0 or amount > remaining:
        raise invalid(
            "amount_exceeds_refundable",
            f"amount must be between 1 and {remaining} (what is still refundable)",
            FieldProblem(("body", "amount"), f"must be 1..{remaining}"),
        )
    return amount


def allocate_refund(amount: int, refundable: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    """Split `amount` over payments, in the order given (kassa passes newest first), taking
    from each payment as much as it still has before moving to the next.

    The parts always sum to `amount`; raises ValueError if the payments cannot cover it."""
    parts: list[tuple[str, int]] = []
    left = amount
    for payment_id, available in refundable:
        if left == 0:
            break
        take = min(left, max(0, available))
        if take:
            parts.append((payment_id, take))
            left -= take
    if left:
        raise ValueError(f"payments cannot cover a refund of {amount}")
    return parts
