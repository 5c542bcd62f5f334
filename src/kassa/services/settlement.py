"""The one writer of a payment's status, and the one place a payment becomes money received.

Every path that learns something about a payment ends here, inside its own transaction,
with the payment row already locked (`lock_payment`): the orchestrator's answer
(`apply_intent`), the browser flow and a resumed payment (`apply_intent` too), and the
provider's webhooks (`payment_succeeded`, `payment_failed`, `payment_requires_action`).
`_transition` checks `domain.payments.PAYMENT_TRANSITIONS` and audits the change, so the
paths can never disagree: a report that the table refuses (a failure after a success, any
report about a succeeded payment) is a no-op, whatever order the reports arrive in.

Paying the order also takes its goods: unique items move reserved -> sold, limited stock
is decremented by a conditional update that never goes below zero, and anything that
could not be taken sets `stock_shortage` for staff (the order is paid regardless).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from kassa.domain.orders import OrderStatus, ProductStatus
from kassa.domain.payments import PaymentStatus, ProviderFailure, failure_json, payment_may_become
from kassa.domain.wallet import EntryKind
from kassa.providers.base import IntentStatus, ProviderIntent
from kassa.services import audit
from kassa.services.context import RequestContext
from kassa.services.invoices import request_invoice
from kassa.services.orders import lock_order
from kassa.services.wallets import post_entry
from kassa.storage.outbox import retire
from kassa.storage.tables import Order, OrderLine, Payment, Product

RESUME_PAYMENT = "payments.resume"


def resume_guard_key(payment_id: str) -> str:
    """The payment's resume job, enqueued when it opens (`payments.open_gateway_payment`)
    and retired here as soon as the payment leaves `processing`."""
    return f"{RESUME_PAYMENT}:{payment_id}"


def lock_payment(session: Session, payment_id: str) -> Payment | None:
    return session.scalar(
        select(Payment)
        .where(Payment.id == payment_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def lock_payment_of_intent(session: Session, provider: str, intent_id: str) -> Payment | None:
    """`provider`'s payment with that intent id, locked in the same statement that finds it."""
    return session.scalar(
        select(Payment)
        .where(Payment.provider == provider, Payment.provider_payment_id == intent_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def _transition(
    session: Session,
    ctx: RequestContext,
    payment: Payment,
    target: PaymentStatus,
    now: datetime,
    after: dict[str, Any] | None = None,
) -> bool:
    """Move a locked payment to `target` if the transitions table allows it; audited.
    Returns False (and changes nothing) otherwise, or when it is already there."""
    before = PaymentStatus(payment.status)
    if not payment_may_become(before, target):
        return False
    payment.status = target.value
    payment.updated_at = now
    if before is PaymentStatus.PROCESSING:
        retire(session, resume_guard_key(payment.id))
    audit.record(
        session,
        ctx,
        at=now,
        action=f"payment.{target.value}",
        subject=payment.id,
        before={"status": before.value},
        after={"status": target.value, **(after or {})},
    )
    return True


def payment_failed(
    session: Session, ctx: RequestContext, payment: Payment, failure: ProviderFailure, now: datetime
) -> bool:
    """The provider refused the payment (a decline, an error that ended it)."""
    record = failure_json(failure)
    if not _transition(session, ctx, payment, PaymentStatus.FAILED, now, {"failure": record}):
        return False
    payment.failure = record
    payment.next_action = None
    return True


def payment_requires_action(
    session: Session,
    ctx: RequestContext,
    payment: Payment,
    next_action: dict[str, Any] | None,
    now: datetime,
) -> bool:
    """The shopper must act (3-D Secure, or confirm with the client secret)."""
    if payment.status == PaymentStatus.REQUIRES_ACTION.value:
        payment.next_action = next_action or payment.next_action  # a newer challenge
        return False
    if not _transition(session, ctx, payment, PaymentStatus.REQUIRES_ACTION, now):
        return False
    payment.next_action = next_action or payment.next_action
    return True


def apply_intent(
    session: Session, ctx: RequestContext, payment: Payment, intent: ProviderIntent, now: datetime
) -> None:
    """Bring a locked payment in line with its provider intent (idempotent)."""
    payment.provider_payment_id = intent.id
    payment.client_secret = intent.client_secret
    if intent.status is IntentStatus.SUCCEEDED:
        payment_succeeded(session, ctx, payment, now)
    elif intent.status is IntentStatus.REQUIRES_ACTION:
        payment_requires_action(session, ctx, payment, intent.next_action, now)
    elif intent.status in (
        IntentStatus.REQUIRES_PAYMENT_METHOD,
        IntentStatus.REQUIRES_CONFIRMATION,
    ):
        if intent.last_error is not None:
            payment_failed(session, ctx, payment, intent.last_error, now)
        else:  # the browser flow: the shopper confirms with the client secret
            payment_requires_action(
                session, ctx, payment, {"type": "confirm_with_client_secret"}, now
            )
    elif intent.status is IntentStatus.PROCESSING:
        _transition(session, ctx, payment, PaymentStatus.PROCESSING, now)
    elif intent.status is IntentStatus.CANCELED:
        _transition(session, ctx, payment, PaymentStatus.CANCELED, now)


def payment_succeeded(
    session: Session, ctx: RequestContext, payment: Payment, now: datetime
) -> bool:
    """Record that a locked payment succeeded; returns False if it already had."""
    if not _transition(
        session,
        ctx,
        payment,
        PaymentStatus.SUCCEEDED,
        now,
        {"amount": payment.amount, "order": payment.order_id},
    ):
        return False
    payment.succeeded_at = now
    payment.next_action = None
    payment.failure = None
    if payment.order_id is None:  # a wallet top-up: the money becomes credit
        assert payment.top_up_customer_id is not None
        post_entry(
            session,
            payment.top_up_customer_id,
            payment.currency,
            payment.amount,
            EntryKind.TOP_UP,
            now,
            reference=payment.id,
            actor=ctx.actor_key_id,
        )
        return True
    order = lock_order(session, payment.order_id)
    assert order is not None
    order.amount_paid += payment.amount
    if order.status == OrderStatus.PENDING.value:
        order.status = OrderStatus.PAID.value
        order.paid_at = now
        order.reservation_expires_at = None
        _take_goods(session, order)
        request_invoice(session, order.id, now)
        audit.record(
            session,
            ctx,
            at=now,
            action="order.paid",
            subject=order.id,
            before={"status": "pending"},
            after={
                "status": order.status,
                "amount_paid": order.amount_paid,
                "stock_shortage": order.stock_shortage,
            },
        )
    else:
        # Money arrived for an order that is no longer pending (e.g. cancelled while the
        # shopper was paying). It is recorded, never dropped; staff refund it.
        audit.record(
            session,
            ctx,
            at=now,
            action="payment.succeeded_on_" + order.status + "_order",
            subject=order.id,
            after={"amount_paid": order.amount_paid, "payment": payment.id},
        )
    return True


def _take_goods(session: Session, order: Order) -> None:
    lines = session.scalars(
        select(OrderLine).where(OrderLine.order_id == order.id).order_by(OrderLine.sku)
    ).all()
    shortage = False
    for line in lines:  # SKU order, like every other multi-product lock in kassa
        if line.unique:
            taken = session.execute(
                update(Product)
                .where(
                    Product.id == line.product_id,
                    Product.status == ProductStatus.RESERVED.value,
                    Product.reserved_by_order == order.id,
                )
                .values(
                    status=ProductStatus.SOLD.value, reserved_until=None, updated_at=order.paid_at
                )
            )
        else:
            taken = session.execute(
                update(Product)
                .where(
                    Product.id == line.product_id,
                    Product.stock.is_(None) | (Product.stock >= line.quantity),
                )
                .values(
                    stock=Product.stock - line.quantity,  # NULL (unlimited) stays NULL
                    updated_at=order.paid_at,
                )
            )
        if getattr(taken, "rowcount", 0) != 1:
            shortage = True
    order.stock_shortage = shortage
