"""Stripe's webhook signature scheme, used for Stripe's events and the mock's.

Header: `Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">[,v1=...]`.
An event is genuine when any `v1` matches any of the configured secrets (several during a
rotation) and its timestamp is within the tolerance of now. Comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from kassa.providers.events import SignatureError, WebhookScheme

DEFAULT_TOLERANCE_S = 300
__all__ = ["SignatureError", "scheme", "sign", "verify"]


@dataclass(frozen=True, slots=True)
class ParsedHeader:
    timestamp: int
    signatures: tuple[str, ...]


def compute(payload: bytes, secret: str, timestamp: int) -> str:
    signed = str(timestamp).encode() + b"." + payload
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    """The header value a sender puts on `payload`."""
    return f"t={timestamp},v1={compute(payload, secret, timestamp)}"


def parse(header: str | None) -> ParsedHeader:
    if not header:
        raise SignatureError("missing Stripe-Signature header")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureError("malformed Stripe-Signature header")
        if key == "t":
            if not value.isdigit() or len(value) > 12:
                raise SignatureError("malformed timestamp in Stripe-Signature")
            timestamp = int(value)
        elif key == "v1":
            if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
                raise SignatureError("malformed v1 signature")
            signatures.append(value)
    if timestamp is None or not signatures:
        raise SignatureError("Stripe-Signature needs t= and at least one v1=")
    return ParsedHeader(timestamp, tuple(signatures))


def verify(
    payload: bytes,
    header: str | None,
    secrets: Sequence[str],
    now: int,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> int:
    """Check a delivery; returns its timestamp or raises SignatureError."""
    if not secrets:
        raise SignatureError("no webhook secret is configured for this provider")
    parsed = parse(header)
    if abs(now - parsed.timestamp) > tolerance_s:
        raise SignatureError("timestamp outside the tolerance")
    expected = [compute(payload, secret, parsed.timestamp) for secret in secrets]
    # Compare every pair (no early exit) so timing does not say which secret matched.
    matched = False
    for good in expected:
        for given in parsed.signatures:
            matched |= hmac.compare_digest(good, given)
    if not matched:
        raise SignatureError("no signature matches")
    return parsed.timestamp


def scheme(secrets: Sequence[str], tolerance_s: int = DEFAULT_TOLERANCE_S) -> WebhookScheme:
    """Stripe's check with these secrets (several during a rotation)."""

    def check(payload: bytes, header: str | None, now: int) -> int:
        return verify(payload, header, tuple(secrets), now, tolerance_s)

    return WebhookScheme(header="Stripe-Signature", verify=check)
