"""Webhooks.apply dispatches typed provider events: one handler per type, no wire format."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, get_args

import pytest

from kassa.providers.events import TypedEvent
from kassa.providers.stripe.events import decode
from kassa.providers.stripe.signatures import scheme
from kassa.services.context import utc_now
from kassa.services.webhooks import Webhooks

SRC = Path(__file__).resolve().parents[2] / "src" / "kassa"
NONE: Any = None


def test_every_typed_event_has_exactly_one_handler() -> None:
    webhooks = Webhooks(NONE, utc_now, {"mock": scheme(("s",))}, {"mock": decode}, NONE)
    assert set(webhooks._handlers) == set(get_args(TypedEvent))


def test_a_provider_with_webhooks_needs_a_decoder() -> None:
    with pytest.raises(ValueError, match="no event decoder for stripe"):
        Webhooks(
            NONE,
            utc_now,
            {"mock": scheme(("s",)), "stripe": scheme(("s",))},
            {"mock": decode},
            NONE,
        )


def test_no_module_outside_providers_reads_stripes_events() -> None:
    wire = re.compile(
        r"payment_intent\.|charge\.refunded|charge\.dispute|last_payment_error|Stripe-Signature"
    )
    offenders = [
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if "providers" not in path.relative_to(SRC).parts and wire.search(path.read_text())
    ]
    assert offenders == []
