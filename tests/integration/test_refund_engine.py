"""Refunds through the provider-call engine (services.orchestrator), on both databases:
the unknown-outcome look-up, the degraded-gateway check, attempt records, and a resume
job only for the parts that need one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import stripe
from sqlalchemy import func, select

from kassa.bootstrap import Kassa
from kassa.domain.orders import LineRequest
from kassa.domain.payments import ErrorType, ProviderFailure
from kassa.domain.refunds import RefundStatus
from kassa.providers.base import IntentRequest, IntentStatus, ProviderError
from kassa.providers.mock.tables import MockCharge, MockRefund, MockRequest
from kassa.providers.stripe.gateway import StripeGateway
from kassa.services.catalogue import NewProduct
from kassa.services.context import RequestContext
from kassa.services.orders import NewOrder
from kassa.services.refunds import RESUME_AFTER_S, RESUME_REFUND
from kassa.storage.tables import Job, Payment, PaymentAttempt, RefundAttempt
from kassa.worker import Worker
from tests.conftest import FakeClock, Sleeps
from tests.stripe_fake import FakeStripe, start_fake_stripe


@pytest.fixture
def shop(kassa: Kassa, system: RequestContext) -> Kassa:
    kassa.catalogue.create(system, NewProduct("MUG", "Mug", 1000, "EUR", stock=None))
    return kassa


def paid_order(core: Kassa, ctx: RequestContext, method: str, provider: str = "mock") -> str:
    order = core.orders.create(ctx, NewOrder("EUR", [LineRequest("MUG", 3)], email="e@x.io"))
    paid = core.payments.pay(ctx, order.id, provider=provider, payment_method=method)
    assert paid.status == "succeeded", paid
    return order.id


def attempts(core: Kassa, part_id: str) -> list[tuple[int, str, str, int | None]]:
    with core.db.transaction(read_only=True) as s:
        rows = s.execute(
            select(
                RefundAttempt.number,
                RefundAttempt.outcome,
                RefundAttempt.provider,
                RefundAttempt.retry_delay_ms,
            )
            .where(RefundAttempt.refund_id == part_id)
            .order_by(RefundAttempt.number)
        ).all()
    return [(n, outcome, provider, delay) for n, outcome, provider, delay in rows]


def resume_jobs(core: Kassa) -> list[tuple[str, str]]:
    """(part id, state) of every refund resume job."""
    with core.db.transaction(read_only=True) as s:
        rows = s.execute(select(Job.payload, Job.state).where(Job.kind == RESUME_REFUND)).all()
    return [(str(payload["refund"]), state) for payload, state in rows]


def provider_refund_calls(core: Kassa) -> int:
    with core.db.transaction(read_only=True) as s:
        return int(s.scalar(select(func.count()).where(MockRequest.operation == "refund")) or 0)


def test_a_refund_leaves_its_attempt_and_no_resume_job(shop: Kassa, system: RequestContext) -> None:
    order = paid_order(shop, system, "pm_card_visa")
    refund = shop.refunds.create(system, order, amount=1200)
    assert refund.status == "succeeded"
    assert attempts(shop, refund.id) == [(1, "succeeded", "mock", None)]
    assert resume_jobs(shop) == []  # the crash guard was retired when the part settled


def test_a_lost_answer_is_looked_up_not_retried(shop: Kassa, system: RequestContext) -> None:
    order = paid_order(shop, system, "pm_card_visa|ok,ok,timeout_after_send")
    refund = shop.refunds.create(system, order, amount=900)
    assert refund.status == "succeeded" and (refund.provider_refund_id or "").startswith("re_mock_")
    assert attempts(shop, refund.id) == [(1, "unknown", "mock", None)]
    assert provider_refund_calls(shop) == 1  # found by the look-up: no second call
    with shop.db.transaction(read_only=True) as s:
        assert s.scalars(select(MockRefund.amount)).all() == [900]
    assert resume_jobs(shop) == []
    assert shop.orders.get(system, order).amount_refunded == 900


class LosesTheFirstRefund:
    """The mock gateway, but the first refund request times out after it was sent and
    before the provider acted: the look-up finds nothing, so the engine retries."""

    name = "lossy"

    def __init__(self, mock: Any) -> None:
        self._mock = mock
        self.lost = False

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._mock, attr)

    def refund(self, intent_id: str, amount: int, **kw: Any) -> Any:
        if not self.lost:
            self.lost = True
            raise ProviderError(ProviderFailure(ErrorType.TIMEOUT, "lost", reached_provider=None))
        return self._mock.refund(intent_id, amount, **kw)


def test_an_unknown_outcome_not_found_is_retried_with_the_same_key(
    settings: Any, clock: FakeClock, sleeps: Sleeps, system: RequestContext
) -> None:
    probe = Kassa(settings, clock=clock, sleep=sleeps)
    lossy = LosesTheFirstRefund(probe.mock)
    core = Kassa(settings, clock=clock, sleep=sleeps, extra_providers={"lossy": lossy})
    try:
        core.catalogue.create(system, NewProduct("MUG", "Mug", 1000, "EUR", stock=None))
        order = paid_order(core, system, "pm_card_visa", provider="lossy")
        refund = core.refunds.create(system, order, amount=900)
        assert refund.status == "succeeded"
        assert [(n, o, p) for n, o, p, _ in attempts(core, refund.id)] == [
            (1, "unknown", "lossy"),
            (2, "succeeded", "lossy"),
        ]
        assert len(sleeps.seconds) == 1  # one jittered delay before the retry
        assert resume_jobs(core) == []
    finally:
        core.close()
        probe.close()


def test_a_provider_that_stays_unavailable_leaves_the_part_pending_with_its_resume_job(
    shop: Kassa, system: RequestContext, clock: FakeClock
) -> None:
    # a timeout, then a 500 on the retry: the part holds its amount and keeps its job
    order = paid_order(shop, system, "pm_card_visa|ok,ok,timeout_before_send,api_error")
    refund = shop.refunds.create(system, order, amount=900)
    assert refund.status == "pending" and refund.provider_refund_id is None
    found = attempts(shop, refund.id)
    assert [(n, outcome) for n, outcome, _, _ in found] == [
        (1, "soft_failure"),
        (2, "soft_failure"),
    ]
    assert found[0][3] is None and found[1][3] is not None  # the retry waited first
    assert resume_jobs(shop) == [(refund.id, "queued")]
    clock.advance(RESUME_AFTER_S + 1)
    Worker(shop, name="w").drain()
    settled = shop.refunds.get(refund.id)
    assert settled.status == "succeeded"
    assert [n for n, *_ in attempts(shop, refund.id)] == [1, 2, 3]  # the worker's call too
    assert resume_jobs(shop) == [(refund.id, "done")]
    assert shop.orders.get(system, order).amount_refunded == 900


def test_a_hard_failure_retires_the_resume_job(shop: Kassa, system: RequestContext) -> None:
    order = paid_order(shop, system, "pm_card_visa")
    with shop.db.transaction() as s:  # the mock refuses what is no longer there to refund
        charge = s.scalars(select(MockCharge)).one()
        charge.amount_refunded = charge.amount
    refund = shop.refunds.create(system, order, amount=500)
    assert refund.status == "failed" and refund.failure is not None
    assert attempts(shop, refund.id) == [(1, "hard_failure", "mock", None)]
    assert resume_jobs(shop) == []


def _degrade(core: Kassa, clock: FakeClock, order_id: str) -> None:
    """Twenty failed calls in the health window: the gateway turns degraded."""
    now = clock()
    with core.db.transaction(read_only=True) as s:
        payment_id = s.scalars(select(Payment.id).where(Payment.order_id == order_id)).one()
    with core.db.transaction() as s:
        for number in range(100, 120):
            s.add(
                PaymentAttempt(
                    payment_id=payment_id,
                    provider="mock",
                    number=number,
                    operation="confirm_intent",
                    started_at=now,
                    duration_ms=5,
                    outcome="soft_failure",
                    error_type="api_error",
                    gateway_failure=True,
                )
            )
    core.gateway_health.forget_cache()


def test_no_retry_into_a_degraded_gateway(
    shop: Kassa, system: RequestContext, clock: FakeClock
) -> None:
    order = paid_order(shop, system, "pm_card_visa|ok,ok,api_error")
    _degrade(shop, clock, order)
    refund = shop.refunds.create(system, order, amount=700)
    # before the engine, the refund loop retried regardless (and the retry would succeed)
    assert refund.status == "pending"
    assert [outcome for _, outcome, _, _ in attempts(shop, refund.id)] == ["soft_failure"]
    assert provider_refund_calls(shop) == 1
    assert resume_jobs(shop) == [(refund.id, "queued")]


def test_refund_attempts_count_for_gateway_health_not_for_payment_analytics(
    shop: Kassa, system: RequestContext
) -> None:
    order = paid_order(shop, system, "pm_card_visa|ok,ok,api_error,api_error")
    before = shop.analytics.payments(3600)
    refund = shop.refunds.create(system, order, amount=700)
    assert refund.status == "pending"
    health = shop.gateway_health.report("mock")
    assert (health.stats.attempts, health.stats.failures) == (4, 2)  # 2 payment + 2 refund
    after = shop.analytics.payments(3600)
    assert (after.attempts, after.payments, after.failure_types) == (
        before.attempts,
        before.payments,
        before.failure_types,
    )


# -- Stripe: the look-up behind a lost refund answer ------------------------------------


@pytest.fixture(scope="module")
def fake_stripe() -> Iterator[FakeStripe]:
    yield from start_fake_stripe()


def test_stripe_finds_a_refund_by_its_kassa_reference(fake_stripe: FakeStripe) -> None:
    gateway = StripeGateway("sk_test_kassa", api_base=fake_stripe.url)
    sdk = stripe.StripeClient("sk_test_kassa", base_addresses={"api": fake_stripe.upstream})
    pm = sdk.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    )
    intent = gateway.create_intent(
        IntentRequest(amount=3000, currency="EUR", reference="pay_x", payment_method=str(pm.id)),
        idempotency_key="engine-create",
    )
    intent = gateway.confirm_intent(intent.id, idempotency_key="engine-confirm")
    assert intent.status is IntentStatus.SUCCEEDED
    assert gateway.find_refund(intent.id, "re_part_a") is None
    made = gateway.refund(intent.id, 500, idempotency_key="engine-r1", reference="re_part_a")
    gateway.refund(intent.id, 700, idempotency_key="engine-r2", reference="re_part_b")
    found = gateway.find_refund(intent.id, "re_part_a")
    assert found is not None
    assert (found.id, found.amount, found.reference, found.status) == (
        made.id,
        500,
        "re_part_a",
        RefundStatus.SUCCEEDED,
    )
    assert gateway.find_refund(intent.id, "re_part_c") is None
