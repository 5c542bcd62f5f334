"""One writer of payment status (issue 9): every path's reports go through `settlement`,
which applies `domain.payments.PAYMENT_TRANSITIONS`; "succeeded is final".

A Hypothesis state machine sends a payment random reports, in random order and repeated,
through each entry point a path uses: the orchestrator's and the browser flow's and the
resume job's `apply_intent` (every intent status), and the webhooks' `payment_succeeded`,
`payment_failed` and `payment_requires_action`. After every step, read back from the
database: the status follows the transitions table; once succeeded it never changes; the
order is paid, and holds the payment's amount, exactly when the payment succeeded; every
change of status is audited once, and a refused report changes nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kassa.bootstrap import Kassa
from kassa.domain.orders import LineRequest
from kassa.domain.payments import (
    PAYMENT_TRANSITIONS,
    ErrorType,
    PaymentStatus,
    ProviderFailure,
    payment_may_become,
)
from kassa.domain.roles import Role
from kassa.providers.base import IntentStatus, ProviderIntent
from kassa.services import settlement
from kassa.services.catalogue import NewProduct
from kassa.services.context import RequestContext
from kassa.services.invoices import Invoices
from kassa.services.orders import NewOrder
from kassa.storage.tables import AuditRecord, IssuedDocument, Order, Payment

P = PaymentStatus
DECLINE = ProviderFailure(ErrorType.CARD_ERROR, "declined", "card_declined", "generic_decline")
ACTION = {"type": "use_stripe_sdk"}
_ids = itertools.count()

# Each report: what it asks for, and how a path delivers it to settlement.
Report = Callable[[Session, RequestContext, Payment, Any, Invoices], None]


def _intent(status: IntentStatus, **extra: Any) -> Callable[[Payment], ProviderIntent]:
    return lambda p: ProviderIntent(
        id=p.provider_payment_id or f"pi_{p.id}",
        status=status,
        amount=p.amount,
        currency=p.currency,
        client_secret=f"pi_{p.id}_secret",
        **extra,
    )


REPORTS: dict[str, tuple[PaymentStatus, Report]] = {
    "intent succeeded": (
        P.SUCCEEDED,
        lambda s, c, p, now, inv: settlement.apply_intent(
            s, c, p, _intent(IntentStatus.SUCCEEDED)(p), now, invoices=inv
        ),
    ),
    "webhook succeeded": (
        P.SUCCEEDED,
        lambda s, c, p, now, inv: settlement.payment_succeeded(s, c, p, now, invoices=inv),
    ),
    "intent declined": (
        P.FAILED,
        lambda s, c, p, now, inv: settlement.apply_intent(
            s,
            c,
            p,
            _intent(IntentStatus.REQUIRES_PAYMENT_METHOD, last_error=DECLINE)(p),
            now,
            invoices=inv,
        ),
    ),
    "webhook failed": (
        P.FAILED,
        lambda s, c, p, now, inv: settlement.payment_failed(s, c, p, DECLINE, now),
    ),
    "intent 3-D Secure": (
        P.REQUIRES_ACTION,
        lambda s, c, p, now, inv: settlement.apply_intent(
            s, c, p, _intent(IntentStatus.REQUIRES_ACTION, next_action=ACTION)(p), now, invoices=inv
        ),
    ),
    "intent awaits the browser": (
        P.REQUIRES_ACTION,
        lambda s, c, p, now, inv: settlement.apply_intent(
            s, c, p, _intent(IntentStatus.REQUIRES_PAYMENT_METHOD)(p), now, invoices=inv
        ),
    ),
    "webhook requires action": (
        P.REQUIRES_ACTION,
        lambda s, c, p, now, inv: settlement.payment_requires_action(s, c, p, ACTION, now),
    ),
    "intent processing": (
        P.PROCESSING,
        lambda s, c, p, now, inv: settlement.apply_intent(
            s, c, p, _intent(IntentStatus.PROCESSING)(p), now, invoices=inv
        ),
    ),
    "intent canceled": (
        P.CANCELED,
        lambda s, c, p, now, inv: settlement.apply_intent(
            s, c, p, _intent(IntentStatus.CANCELED)(p), now, invoices=inv
        ),
    ),
}


class PaymentStatusMachine(RuleBasedStateMachine):
    kassa: ClassVar[Kassa]
    tally: ClassVar[dict[str, int]]

    @initialize()
    def open_a_payment(self) -> None:
        core = self.kassa
        system = RequestContext.system("machine")
        order = core.orders.create(
            system, NewOrder("EUR", [LineRequest("MUG", 1)], email="m@example.com")
        )
        self.payment_id, _, _ = core.payments._open(system, order.id, "mock", "pm_x", None)
        self.order_id = order.id
        self.status = P.PROCESSING
        self.ever_succeeded = False
        self.changes = 0

    @rule(report=st.sampled_from(sorted(REPORTS)), actor=st.sampled_from(["provider", "worker"]))
    def report(self, report: str, actor: str) -> None:
        target, deliver = REPORTS[report]
        core = self.kassa
        ctx = RequestContext(f"{actor}:{next(_ids)}", Role.ADMIN)
        with core.db.transaction() as session:
            payment = settlement.lock_payment(session, self.payment_id)
            assert payment is not None
            deliver(session, ctx, payment, core.clock(), core.invoices)
        if payment_may_become(self.status, target):
            self.status = target
            self.changes += 1
            self.tally[f"{report} applied"] = self.tally.get(f"{report} applied", 0) + 1
        else:
            self.tally[f"{report} refused"] = self.tally.get(f"{report} refused", 0) + 1
        self.ever_succeeded |= self.status is P.SUCCEEDED

    @invariant()
    def the_database_follows_the_table(self) -> None:
        if not hasattr(self, "payment_id"):
            return
        with self.kassa.db.transaction(read_only=True) as s:
            payment = s.scalar(select(Payment).where(Payment.id == self.payment_id))
            order = s.scalar(select(Order).where(Order.id == self.order_id))
            invoices = s.scalar(
                select(func.count()).where(IssuedDocument.invoiced_order_id == self.order_id)
            )
            audited = s.scalar(
                select(func.count()).where(
                    AuditRecord.subject_id == self.payment_id,
                    AuditRecord.action.like("payment.%"),
                    AuditRecord.action != "payment.created",
                )
            )
        assert payment is not None and order is not None
        assert payment.status == self.status.value
        # succeeded is final, and the order holds the money exactly when it succeeded
        assert (payment.status == P.SUCCEEDED) == self.ever_succeeded
        assert (payment.succeeded_at is not None) == self.ever_succeeded
        assert order.amount_paid == (payment.amount if self.ever_succeeded else 0)
        assert (order.status == "paid") == self.ever_succeeded
        assert invoices == (1 if self.ever_succeeded else 0)  # issued as it is paid, once
        assert audited == self.changes
        if payment.status == P.FAILED:
            assert payment.failure is not None and payment.failure["code"] == "card_declined"


def test_the_transitions_table_is_closed_and_succeeded_is_final() -> None:
    assert set(PAYMENT_TRANSITIONS) == set(PaymentStatus)
    assert PAYMENT_TRANSITIONS[P.SUCCEEDED] == frozenset()
    for status, targets in PAYMENT_TRANSITIONS.items():
        assert status not in targets
        assert status is P.SUCCEEDED or P.SUCCEEDED in targets  # money is never dropped


@pytest.mark.slow
def test_every_path_writes_status_through_the_table(kassa: Kassa, is_postgres: bool) -> None:
    kassa.catalogue.create(
        RequestContext.system("t"), NewProduct("MUG", "Mug", 1450, "EUR", stock=None)
    )

    class Bound(PaymentStatusMachine):
        pass

    Bound.kassa = kassa
    Bound.tally = {}
    run_state_machine_as_test(
        Bound,
        settings=settings(
            max_examples=25 if is_postgres else 60,
            stateful_step_count=12,
            deadline=None,
            # the same walk every run: the reach checks below are about this walk, and a
            # random one missed "webhook failed applied" once in a full run (2026-12-02)
            derandomize=True,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
    # the walk reached every status and was refused too
    for name in ("intent succeeded", "webhook failed", "intent 3-D Secure", "intent canceled"):
        assert Bound.tally.get(f"{name} applied"), Bound.tally
    assert any(k.endswith("refused") for k in Bound.tally), Bound.tally
