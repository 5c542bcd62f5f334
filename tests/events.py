"""Stripe-shaped provider events for tests, signed like Stripe signs them."""

from __future__ import annotations

import json
from typing import Any

from kassa.providers.stripe import signatures

MOCK_SECRET = "whsec_kassa_mock_sandbox"


def event(event_id: str, kind: str, obj: dict[str, Any]) -> bytes:
    return json.dumps(
        {"id": event_id, "object": "event", "type": kind, "data": {"object": obj}}
    ).encode()


def signed(body: bytes, timestamp: int, secret: str = MOCK_SECRET) -> dict[str, str]:
    return {
        "Stripe-Signature": signatures.sign(body, secret, timestamp),
        "Content-Type": "application/json",
    }


def intent(intent_id: str, payment_id: str, amount: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": intent_id,
        "object": "payment_intent",
        "amount": amount,
        "currency": "eur",
        "metadata": {"kassa_payment": payment_id},
        **extra,
    }


def charge_refunded(
    intent_id: str, payment_id: str, refunds: list[tuple[str, int]]
) -> dict[str, Any]:
    return {
        "id": f"ch_{intent_id}",
        "object": "charge",
        "payment_intent": intent_id,
        "amount_refunded": sum(a for _, a in refunds),
        "metadata": {"kassa_payment": payment_id},
        "refunds": {
            "data": [{"id": rid, "amount": a, "status": "succeeded"} for rid, a in refunds]
        },
    }


def dispute(intent_id: str, payment_id: str, amount: int) -> dict[str, Any]:
    return {
        "id": f"dp_{intent_id}",
        "object": "dispute",
        "payment_intent": intent_id,
        "amount": amount,
        "reason": "fraudulent",
        "metadata": {"kassa_payment": payment_id},
    }
