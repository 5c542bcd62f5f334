"""Decoding Stripe-shaped events into kassa's typed provider events."""

from __future__ import annotations

import json
from typing import Any

import pytest

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
    SettledRefund,
)
from kassa.providers.stripe.events import decode
from tests.events import charge_refunded, dispute, event, intent


def decoded(kind: str, obj: dict[str, Any], event_id: str = "evt_1") -> DecodedEvent:
    return decode(json.loads(event(event_id, kind, obj)))


def test_intent_succeeded() -> None:
    d = decoded("payment_intent.succeeded", intent("pi_1", "pay_1", 1450))
    assert d == DecodedEvent(
        "evt_1", "payment_intent.succeeded", IntentSucceeded("pi_1", "pay_1", 1450, "eur")
    )


def test_intent_succeeded_with_odd_values_keeps_only_well_typed_fields() -> None:
    obj = {"id": 17, "amount": "1450", "currency": None, "metadata": {"kassa_payment": 5}}
    assert decoded("payment_intent.succeeded", obj).event == IntentSucceeded(None, None, None, None)
    obj = {"id": "pi_1", "amount": True, "metadata": "pay_1"}
    assert decoded("payment_intent.succeeded", obj).event == IntentSucceeded(
        "pi_1", None, None, None
    )


def test_intent_succeeded_without_metadata() -> None:
    obj = {"id": "pi_1", "amount": 100, "currency": "jpy"}
    assert decoded("payment_intent.succeeded", obj).event == IntentSucceeded(
        "pi_1", None, 100, "jpy"
    )


def test_intent_failed_with_a_card_error() -> None:
    error = {
        "type": "card_error",
        "message": "Your card was declined.",
        "code": "card_declined",
        "decline_code": "insufficient_funds",
    }
    obj = intent("pi_1", "pay_1", 1450, last_payment_error=error)
    assert decoded("payment_intent.payment_failed", obj).event == IntentFailed(
        "pi_1",
        "pay_1",
        ProviderFailure(
            ErrorType.CARD_ERROR, "Your card was declined.", "card_declined", "insufficient_funds"
        ),
    )


@pytest.mark.parametrize("error", [None, {}, "declined", ["x"], {"code": 5, "decline_code": {}}])
def test_intent_failed_without_a_usable_error_is_an_api_error(error: Any) -> None:
    obj = intent("pi_1", "pay_1", 1450, last_payment_error=error)
    typed = decoded("payment_intent.payment_failed", obj).event
    assert typed == IntentFailed(
        "pi_1", "pay_1", ProviderFailure(ErrorType.API_ERROR, "payment failed", None, None)
    )


def test_intent_requires_action() -> None:
    action = {"type": "use_stripe_sdk", "use_stripe_sdk": {"type": "three_d_secure_redirect"}}
    obj = intent("pi_1", "pay_1", 1450, next_action=action)
    assert decoded("payment_intent.requires_action", obj).event == IntentRequiresAction(
        "pi_1", "pay_1", action
    )
    obj = intent("pi_1", "pay_1", 1450, next_action="redirect")
    assert decoded("payment_intent.requires_action", obj).event == IntentRequiresAction(
        "pi_1", "pay_1", None
    )


def test_charge_refunded_with_its_list_of_refunds() -> None:
    obj = charge_refunded("pi_1", "pay_1", [("re_1", 500), ("re_2", 250)])
    assert decoded("charge.refunded", obj).event == RefundsReported(
        intent_id="pi_1",
        kassa_payment_id="pay_1",
        charge_id="ch_pi_1",
        refunds=(
            ReportedRefund("re_1", 500, "succeeded", None),
            ReportedRefund("re_2", 250, "succeeded", None),
        ),
        total_refunded=750,
    )


def test_listed_refunds_name_kassas_own_refund_by_either_key() -> None:
    obj = charge_refunded("pi_1", "pay_1", [])
    obj["refunds"]["data"] = [
        {"id": "re_1", "amount": 500, "status": "succeeded", "metadata": {"kassa_refund": "re_a"}},
        {"id": "re_2", "amount": 100, "metadata": {"kassa_reference": "re_b"}},
        {"id": "re_3", "amount": 100, "status": "pending", "metadata": {"kassa_refund": 7}},
        {"id": "re_4", "amount": 100, "metadata": "re_c"},
    ]
    typed = decoded("charge.refunded", obj).event
    assert isinstance(typed, RefundsReported)
    assert typed.refunds == (
        ReportedRefund("re_1", 500, "succeeded", "re_a"),
        ReportedRefund("re_2", 100, None, "re_b"),  # no status: Stripe means succeeded
        ReportedRefund("re_3", 100, "pending", None),
        ReportedRefund("re_4", 100, None, None),
    )


def test_odd_listed_refunds_keep_only_well_typed_fields() -> None:
    obj = charge_refunded("pi_1", "pay_1", [])
    obj["refunds"]["data"] = [
        "re_1",
        None,
        {"id": 9, "amount": "500", "status": 1},
        {"id": "re_2", "amount": False, "status": ["succeeded"]},
    ]
    typed = decoded("charge.refunded", obj).event
    assert isinstance(typed, RefundsReported)
    assert typed.refunds == (
        ReportedRefund(None, None, UNKNOWN_STATUS, None),
        ReportedRefund("re_2", None, UNKNOWN_STATUS, None),
    )


@pytest.mark.parametrize(
    "refunds", [None, {}, {"data": None}, {"data": {"re_1": 500}}, ["re_1"], "re_1"]
)
def test_without_a_list_of_refunds_only_the_total_is_reported(refunds: Any) -> None:
    obj = {
        "id": "ch_1",
        "object": "charge",
        "payment_intent": "pi_1",
        "amount_refunded": 700,
        "refunds": refunds,
    }
    assert decoded("charge.refunded", obj).event == RefundsReported("pi_1", None, "ch_1", None, 700)


def test_refunds_absent_reports_the_total() -> None:
    obj = {"id": "ch_1", "payment_intent": "pi_1", "amount_refunded": 700}
    assert decoded("charge.refunded", obj).event == RefundsReported("pi_1", None, "ch_1", None, 700)


def test_an_empty_list_of_refunds_is_a_list() -> None:
    obj = {"id": "ch_1", "payment_intent": "pi_1", "amount_refunded": 0, "refunds": {"data": []}}
    typed = decoded("charge.refunded", obj).event
    assert isinstance(typed, RefundsReported)
    assert typed.refunds == ()


def test_charge_refunded_with_odd_ids_and_total() -> None:
    obj = {"id": 3, "payment_intent": ["pi_1"], "amount_refunded": 7.5, "metadata": None}
    assert decoded("charge.refunded", obj).event == RefundsReported(None, None, None, None, None)


def test_dispute_opened() -> None:
    assert decoded("charge.dispute.created", dispute("pi_1", "pay_1", 1450)).event == (
        DisputeOpened("pi_1", "pay_1", "dp_pi_1", 1450, "fraudulent")
    )
    odd = {"id": None, "payment_intent": 1, "amount": "1450", "reason": 4}
    assert decoded("charge.dispute.created", odd).event == DisputeOpened(
        None, None, None, None, None
    )


@pytest.mark.parametrize(
    "kind", ["payment_intent.created", "charge.succeeded", "customer.created", "x"]
)
def test_other_types_are_ignored(kind: str) -> None:
    d = decoded(kind, {"id": "obj_1"}, event_id="evt_9")
    assert d == DecodedEvent("evt_9", kind, Ignored(kind))


@pytest.mark.parametrize(
    "raw",
    [
        None,
        [],
        "evt_1",
        {},
        {"type": "charge.refunded", "data": {"object": {}}},
        {"id": 1, "type": "charge.refunded", "data": {"object": {}}},
        {"id": "", "type": "charge.refunded", "data": {"object": {}}},
        {"id": "e" * 101, "type": "charge.refunded", "data": {"object": {}}},
        {"id": "evt_1", "data": {"object": {}}},
        {"id": "evt_1", "type": "", "data": {"object": {}}},
        {"id": "evt_1", "type": ["charge.refunded"], "data": {"object": {}}},
        {"id": "evt_1", "type": "t" * 101, "data": {"object": {}}},
        {"id": "evt_1", "type": "charge.refunded"},
        {"id": "evt_1", "type": "charge.refunded", "data": []},
        {"id": "evt_1", "type": "charge.refunded", "data": {}},
        {"id": "evt_1", "type": "charge.refunded", "data": {"object": []}},
        {"id": "evt_1", "type": "charge.refunded", "data": {"object": "ch_1"}},
    ],
)
def test_what_is_not_an_event_is_a_decoding_error(raw: Any) -> None:
    with pytest.raises(EventDecodingError, match=r"id, type and data\.object"):
        decode(raw)


def test_decoded_events_are_frozen() -> None:
    typed = decoded("payment_intent.succeeded", intent("pi_1", "pay_1", 1)).event
    with pytest.raises(AttributeError):
        typed.intent_id = "pi_2"  # type: ignore[misc, union-attr]


def test_settled_refunds_are_the_well_typed_ones_that_went_through() -> None:
    obj = charge_refunded("pi_1", "pay_1", [])
    obj["refunds"]["data"] = [
        {"id": "re_1", "amount": 500, "status": "succeeded", "metadata": {"kassa_refund": "re_a"}},
        {"id": "re_2", "amount": 100},  # no status: Stripe means succeeded
        {"id": "re_3", "amount": 100, "status": "pending"},
        {"id": "re_4", "amount": 100, "status": "failed"},
        {"id": "re_5", "amount": 100, "status": 1},
        {"id": 6, "amount": 100, "status": "succeeded"},
        {"id": "re_7", "amount": "100", "status": "succeeded"},
        {"id": "re_8", "amount": True, "status": "succeeded"},
    ]
    typed = decoded("charge.refunded", obj).event
    assert isinstance(typed, RefundsReported)
    assert typed.settled() == (SettledRefund("re_1", 500, "re_a"), SettledRefund("re_2", 100, None))


def test_without_a_list_nothing_is_settled_by_id() -> None:
    obj = {"id": "ch_1", "payment_intent": "pi_1", "amount_refunded": 700}
    typed = decoded("charge.refunded", obj).event
    assert isinstance(typed, RefundsReported)
    assert typed.settled() is None
