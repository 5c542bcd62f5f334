"""Wallet rules: entry kinds and what each does to the balance and to lifetime_paid. Pure."""

from __future__ import annotations

from enum import StrEnum

from kassa.domain.errors import FieldProblem, invalid
from kassa.domain.money import MAX_AMOUNT


class EntryKind(StrEnum):
    TOP_UP = "top_up"  # money paid in through a gateway: counts toward lifetime_paid
    PAYMENT = "payment"  # an order paid from the balance
    REFUND = "refund"  # a refund credited to the wallet instead of the card
    ADJUSTMENT = "adjustment"  # an operator's override; may go negative


def counts_as_paid(kind: EntryKind) -> bool:
    return kind is EntryKind.TOP_UP


def adjustment_delta(previous: int, target: int) -> int:
    """The entry that takes a balance from `previous` to `target` (negative allowed)."""
    if abs(target) > MAX_AMOUNT:
        raise invalid(
            "validation_error",
            f"balance must be within ±{MAX_AMOUNT}",
            FieldProblem(("body", "balance"), "out of range"),
        )
    return target - previous
