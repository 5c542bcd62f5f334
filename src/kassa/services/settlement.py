"""The one place a payment becomes money received: `payment_succeeded`.

The orchestrator (server-side confirmation), the provider webhooks and the browser flow
all end here, inside their own transaction, so the paths can never disagree or apply a
success twice: the payment row is locked and a payment already `succeeded` is a no-op.
Paying the order also takes its goods: unique items move reserved -> sold, limited stock
is decremented by a conditional update that never goes below zero, and anything that
could not be taken sets `stock_shortage` for staff (the order is paid regardless).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from kassa.domain.orders import OrderStatus, ProductStatus
from kassa.domain.payments import PaymentStatus
from kassa.domain.wallet import EntryKind
from kassa.services import audit
from kassa.services.context import RequestContext
from kassa.services.invoices import request_invoice
from kassa.services.orders import lock_order
from kassa.services.wallets import post_entry
from kassa.storage.tables import Order, OrderLine, Payment, Product


def lock_payment(session: Session, payment_id: str) -> Payment | None:
    return session.scalar(
        select(Payment)
        .where(Payment.id == payment_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def payment_succeeded(
    session: Session, ctx: RequestContext, payment_id: str, now: datetime
) -> bool:
    """Record that `payment_id` succeeded; returns False if it already had."""
    payment = lock_payment(session, payment_id)
    if payment is None:
        raise LookupError(payment_id)
    if payment.status == PaymentStatus.SUCCEEDED.value:
        return False
    before = payment.status
    payment.status = PaymentStatus.SUCCEEDED.value
    payment.succeeded_at = now
    payment.updated_at = now
    payment.next_action = None
    payment.failure = None
    audit.record(
        session,
        ctx,
        now,
        "payment.succeeded",
        payment.id,
        {"status": before},
        {"status": payment.status, "amount": payment.amount, "order": payment.order_id},
    )
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
            now,
            "order.paid",
            order.id,
            {"status": "pending"},
            {
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
            now,
            "payment.succeeded_on_" + order.status + "_order",
            order.id,
            None,
            {"amount_paid": order.amount_paid, "payment": payment.id},
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
