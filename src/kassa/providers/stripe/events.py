"""Stripe's webhook events (and the sandbox's, which are Stripe-shaped), decoded.

An event is `{"id": "evt_…", "type": "…", "data": {"object": {…}}}`; kassa acts on five
types, each read from the object exactly as Stripe sends it:

- `payment_intent.succeeded`: the intent `id`, `metadata.kassa_payment`, `amount`, `currency`;
- `payment_intent.payment_failed`: the same ids and `last_payment_error` (type, message,
  code, decline_code);
- `payment_intent.requires_action`: the same ids and `next_action`;
- `charge.refunded`: the charge `id`, its `payment_intent`, `metadata.kassa_payment`,
  `amount_refunded` and, when present, `refunds.data[]` (each with `id`, `amount`,
  `status`, `metadata.kassa_refund` or `metadata.kassa_reference`);
- `charge.dispute.created`: the dispute `id`, its `payment_intent`,
  `metadata.kassa_payment`, `amount`, `reason`.

Anything else is `Ignored`. See `kassa.providers.events` for what a None means.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kassa.domain.payments import ErrorType, ProviderFailure
from kassa.providers.events import (
    UNKNOWN_STATUS,
    DecodedEvent,
    DisputeOpened,
    EventDecodingError,
    Ignored,
    IntentFailed,
    IntentRequiresAction,
    IntentSucceeded,
    RefundsReported,
    ReportedRefund,
    TypedEvent,
)

MAX_ID_LENGTH = 100
MAX_TYPE_LENGTH = 100


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    """An integer amount; a bool is not one (JSON `true` is not 1 cent)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _kassa_payment(obj: dict[str, Any]) -> str | None:
    metadata = obj.get("metadata")
    return _str(metadata.get("kassa_payment")) if isinstance(metadata, dict) else None


def _succeeded(obj: dict[str, Any]) -> IntentSucceeded:
    return IntentSucceeded(
        intent_id=_str(obj.get("id")),
        kassa_payment_id=_kassa_payment(obj),
        amount=_int(obj.get("amount")),
        currency=_str(obj.get("currency")),
    )


def _failed(obj: dict[str, Any]) -> IntentFailed:
    error = obj.get("last_payment_error")
    if not isinstance(error, dict):
        error = {}
    failure = ProviderFailure(
        ErrorType.CARD_ERROR if error.get("type") == "card_error" else ErrorType.API_ERROR,
        str(error.get("message") or "payment failed"),
        _str(error.get("code")),
        _str(error.get("decline_code")),
    )
    return IntentFailed(_str(obj.get("id")), _kassa_payment(obj), failure)


def _requires_action(obj: dict[str, Any]) -> IntentRequiresAction:
    next_action = obj.get("next_action")
    return IntentRequiresAction(
        _str(obj.get("id")),
        _kassa_payment(obj),
        next_action if isinstance(next_action, dict) else None,
    )


def _reported_refund(item: dict[str, Any]) -> ReportedRefund:
    metadata = item.get("metadata")
    ours = None
    if isinstance(metadata, dict):
        # Stripe's refunds carry kassa's refund id; the older key is kassa_reference.
        ours = _str(metadata.get("kassa_refund") or metadata.get("kassa_reference"))
    status = item.get("status")
    return ReportedRefund(
        refund_id=_str(item.get("id")),
        amount=_int(item.get("amount")),
        status=status if status is None or isinstance(status, str) else UNKNOWN_STATUS,
        kassa_refund_id=ours,
    )


def _refunded(obj: dict[str, Any]) -> RefundsReported:
    listed = obj.get("refunds")
    data = listed.get("data") if isinstance(listed, dict) else None
    refunds = (
        tuple(_reported_refund(item) for item in data if isinstance(item, dict))
        if isinstance(data, list)
        else None
    )
    return RefundsReported(
        intent_id=_str(obj.get("payment_intent")),
        kassa_payment_id=_kassa_payment(obj),
        charge_id=_str(obj.get("id")),
        refunds=refunds,
        total_refunded=_int(obj.get("amount_refunded")),
    )


def _disputed(obj: dict[str, Any]) -> DisputeOpened:
    return DisputeOpened(
        intent_id=_str(obj.get("payment_intent")),
        kassa_payment_id=_kassa_payment(obj),
        dispute_id=_str(obj.get("id")),
        amount=_int(obj.get("amount")),
        reason=_str(obj.get("reason")),
    )


DECODERS: dict[str, Callable[[dict[str, Any]], TypedEvent]] = {
    "payment_intent.succeeded": _succeeded,
    "payment_intent.payment_failed": _failed,
    "payment_intent.requires_action": _requires_action,
    "charge.refunded": _refunded,
    "charge.dispute.created": _disputed,
}


def decode(event: Any) -> DecodedEvent:
    """A verified event's JSON (already parsed) as a typed kassa event.

    Raises EventDecodingError when it is not an event at all (no id, type or object)."""
    if not (
        isinstance(event, dict)
        and isinstance(event.get("id"), str)
        and 0 < len(event["id"]) <= MAX_ID_LENGTH
        and isinstance(event.get("type"), str)
        and 0 < len(event["type"]) <= MAX_TYPE_LENGTH
        and isinstance(event.get("data"), dict)
        and isinstance(event["data"].get("object"), dict)
    ):
        raise EventDecodingError("an event needs id, type and data.object")
    kind: str = event["type"]
    decoder = DECODERS.get(kind)
    typed = decoder(event["data"]["object"]) if decoder else Ignored(kind)
    return DecodedEvent(event["id"], kind, typed)
