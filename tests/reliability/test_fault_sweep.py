"""Every fault script of one to three entries, on every provider call of a payment.

Whatever the provider does, a payment that succeeded was charged exactly once, a payment
that failed was not charged at all, and the order's amount_paid agrees.
"""

from __future__ import annotations

import itertools

from sqlalchemy import func, select

from kassa.bootstrap import Kassa
from kassa.domain.orders import LineRequest
from kassa.providers.mock.provider import FAULT_KINDS
from kassa.providers.mock.tables import MockCharge
from kassa.services.catalogue import NewProduct
from kassa.services.context import RequestContext
from kassa.services.orders import NewOrder
from kassa.storage.tables import Order

KINDS = ["ok", *FAULT_KINDS]
SCRIPTS = [",".join(combo) for n in (1, 2, 3) for combo in itertools.product(KINDS, repeat=n)]


def test_no_fault_script_charges_twice_or_charges_a_failure(
    kassa: Kassa, system: RequestContext
) -> None:
    assert len(SCRIPTS) == 399
    kassa.catalogue.create(system, NewProduct("MUG", "Mug", 700, "EUR", stock=None))
    outcomes: dict[str, str] = {}
    by_script: dict[str, str] = {}
    for script in SCRIPTS:
        order = kassa.orders.create(
            system, NewOrder("EUR", [LineRequest("MUG", 1)], email="f@example.com")
        )
        payment = kassa.payments.pay(system, order.id, payment_method=f"pm_card_visa|{script}")
        assert payment.status in ("succeeded", "failed"), (script, payment.status)
        outcomes[order.id] = payment.status
        by_script[script] = payment.status
        if payment.status == "failed":
            assert payment.failure is not None and payment.failure["category"] == "soft"
    with kassa.db.transaction(read_only=True) as s:
        charges = dict(
            s.execute(
                select(MockCharge.order_ref, func.count()).group_by(MockCharge.order_ref)
            ).all()
        )
        paid = dict(s.execute(select(Order.id, Order.amount_paid)).all())
    for order_id, status in outcomes.items():
        expected = 1 if status == "succeeded" else 0
        assert charges.get(order_id, 0) == expected, order_id
        assert paid[order_id] == 700 * expected
    # lost answers are looked up, not retried; a retry is spent on the first transient fault
    assert by_script["ok"] == by_script["api_error"] == by_script["ok,ok,rate_limit"] == "succeeded"
    assert by_script["timeout_after_send,timeout_after_send,timeout_after_send"] == "succeeded"
    assert by_script["api_error,api_error"] == by_script["ok,rate_limit,server_error"] == "failed"
