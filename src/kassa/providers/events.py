"""What a provider's webhook events mean to kassa, whatever the provider's wire format.

Each provider package decodes its own verified events into these frozen values (Stripe's
in `providers/stripe/events.py`, which the sandbox's Stripe-shaped events share). They
carry the provider's own ids, so a handler matches them against the payments and refunds
of the provider that sent (and signed) the event; kassa's own ids travel as hints only
(`kassa_payment_id`, `kassa_refund_id`).

Decoding is strict about the envelope (an event id, a type, an object: otherwise
`EventDecodingError`, which the webhook answers with 400 `malformed_event`) and exact
about the fields: a field that is absent *or of the wrong type* decodes to None, never to
a guess, so a handler sees only well-typed values and decides what a None means.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kassa.domain.payments import ProviderFailure


class EventDecodingError(ValueError):
    """The body is not an event of this provider's shape (the message says why)."""


class SignatureError(ValueError):
    """The signature is missing, malformed, stale or wrong (the reason says which)."""


@dataclass(frozen=True, slots=True)
class WebhookScheme:
    """How one provider's webhook deliveries are checked: `verify(body, the value of the
    `header` it signs in, now in unix seconds)` returns when the delivery was signed or
    raises SignatureError; the provider package builds it with its own secrets."""

    header: str
    verify: Callable[[bytes, str | None, int], int]


@dataclass(frozen=True, slots=True)
class IntentSucceeded:
    """The provider took the money of a payment intent."""

    intent_id: str | None
    kassa_payment_id: str | None
    amount: int | None
    currency: str | None


@dataclass(frozen=True, slots=True)
class IntentFailed:
    """An attempt to pay an intent failed (the intent may be retried with another card)."""

    intent_id: str | None
    kassa_payment_id: str | None
    failure: ProviderFailure


@dataclass(frozen=True, slots=True)
class IntentRequiresAction:
    """The shopper must act (3-D Secure); `next_action` is the provider's instruction."""

    intent_id: str | None
    kassa_payment_id: str | None
    next_action: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class ReportedRefund:
    """One refund the provider lists for a charge.

    `status` is None when the provider did not say (Stripe's older payloads: a listed
    refund then succeeded); a status that is not a string decodes to `UNKNOWN_STATUS`."""

    refund_id: str | None
    amount: int | None
    status: str | None
    kassa_refund_id: str | None


UNKNOWN_STATUS = "unknown"
SUCCEEDED_STATUS = "succeeded"


@dataclass(frozen=True, slots=True)
class SettledRefund:
    """A listed refund that went through: well-typed, so a handler need not check."""

    refund_id: str
    amount: int
    kassa_refund_id: str | None


@dataclass(frozen=True, slots=True)
class RefundsReported:
    """A charge was refunded at the provider, in part or in full.

    `refunds` is the provider's list of the charge's refunds when it sent one (entries
    that are not objects are left out), None when it sent only the cumulative total
    refunded, `total_refunded`."""

    intent_id: str | None
    kassa_payment_id: str | None
    charge_id: str | None
    refunds: tuple[ReportedRefund, ...] | None
    total_refunded: int | None

    def settled(self) -> tuple[SettledRefund, ...] | None:
        """The listed refunds that went through (an id, an amount, and succeeded or no
        status), in the provider's order; None when the provider sent no list."""
        if self.refunds is None:
            return None
        return tuple(
            SettledRefund(r.refund_id, r.amount, r.kassa_refund_id)
            for r in self.refunds
            if r.refund_id is not None
            and r.amount is not None
            and r.status in (None, SUCCEEDED_STATUS)
        )


@dataclass(frozen=True, slots=True)
class DisputeOpened:
    """The cardholder's bank disputes a charge of the intent."""

    intent_id: str | None
    kassa_payment_id: str | None
    dispute_id: str | None
    amount: int | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class Ignored:
    """An event kassa does not act on."""

    type: str


TypedEvent = (
    IntentSucceeded
    | IntentFailed
    | IntentRequiresAction
    | RefundsReported
    | DisputeOpened
    | Ignored
)


@dataclass(frozen=True, slots=True)
class DecodedEvent:
    """A verified event: the provider's event id and type, and what it means."""

    event_id: str
    type: str
    event: TypedEvent
