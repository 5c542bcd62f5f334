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

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from kassa.domain.orders import OrderStatus, ProductStatus
from kassa.domain.payments import PaymentStatus, ProviderFailure, failure_json, payment_may_become
from kassa.domain.wallet import EntryKind
from kassa.providers.base import IntentStatus, ProviderIntent
from kassa.services import audit, events
from kassa.services.context import RequestContext
from kassa.services.invoices import Invoices, PaidOrder, invoice_line
from kassa.services.orders import OrderView
from kassa.services.payment_views import current_view
from kassa.services.wallets import post_entry
from kassa.storage.database import table_of
from kassa.storage.outbox import retire
from kassa.storage.tables import Order, OrderLine, Payment, Product

RESUME_PAYMENT = "payments.resume"
_ORDERS = table_of(Order)
_LINES = table_of(OrderLine)
_PRODUCTS = table_of(Product)


def resume_guard_key(payment_id: str) -> str:
    """The payment's resume job, enqueued when it opens (`payments.open_gateway_payment`)
    and retired here as soon as the payment leaves `processing`."""
    return f"{RESUME_PAYMENT}:{payment_id}"


# The statements of every settlement, built once with bind parameters: built per call,
# each cost its construction and cache key, about as much CPU as running it (issue 10).
# Payments and orders are locked FOR NO KEY UPDATE (`key_share=True`; SQLite has no row
# locks): kassa never changes their keys, and a plain FOR UPDATE would also block the KEY
# SHARE lock a refund's or payment's foreign key takes on its parent, which deadlocked a
# refund (order, then the payment's key) against a webhook (payment, then the order):
# tests/reliability/test_refund_lock_order.py.
_LOCK_PAYMENT = (
    select(Payment)
    .where(Payment.id == bindparam("payment_id"))
    .with_for_update(key_share=True)
    .execution_options(populate_existing=True)
)
_LOCK_PAYMENT_OF_INTENT = (
    select(Payment)
    .where(
        Payment.provider == bindparam("provider"),
        Payment.provider_payment_id == bindparam("intent_id"),
    )
    .with_for_update(key_share=True)
    .execution_options(populate_existing=True)
)
# The paid order, locked, with its lines in SKU order (like every other multi-product
# lock in kassa): one statement for what decides and what is taken, and for the order as
# `order.paid` reports it (every column its view shows: no read back after the UPDATE).
# Lines never change once written, so reading them beside the lock is as good as after it.
_ORDER_VIEW_COLUMNS = tuple(c for c in _ORDERS.c if c.key not in ("pk", "created_by_key"))
_LINE_VIEW_COLUMNS = ("position", "sku", "title", "unit_amount", "amount", "product_status")
_LOCK_ORDER_WITH_LINES = (
    select(
        *_ORDER_VIEW_COLUMNS,
        _LINES.c.product_id,
        _LINES.c.quantity,
        _LINES.c.unique,
        *(_LINES.c[name].label(f"line_{name}") for name in _LINE_VIEW_COLUMNS),
    )
    .select_from(_ORDERS.outerjoin(_LINES, _LINES.c.order_id == _ORDERS.c.id))
    .where(_ORDERS.c.id == bindparam("order_id"))
    .order_by(_LINES.c.sku)
    .with_for_update(of=_ORDERS, key_share=True)
)
_PAY_ORDER = (
    update(_ORDERS)
    .where(_ORDERS.c.id == bindparam("order_id"))
    .values(
        amount_paid=bindparam("paid", type_=_ORDERS.c.amount_paid.type),
        status=OrderStatus.PAID.value,
        paid_at=bindparam("now", type_=_ORDERS.c.paid_at.type),
        reservation_expires_at=None,
        stock_shortage=bindparam("shortage", type_=_ORDERS.c.stock_shortage.type),
    )
)
_SELL_UNIQUE = (
    update(_PRODUCTS)
    .where(
        _PRODUCTS.c.id == bindparam("product_id"),
        _PRODUCTS.c.status == ProductStatus.RESERVED.value,
        _PRODUCTS.c.reserved_by_order == bindparam("order_id"),
    )
    .values(
        status=ProductStatus.SOLD.value,
        reserved_until=None,
        updated_at=bindparam("now", type_=_PRODUCTS.c.updated_at.type),
    )
)
_TAKE_STOCK = (
    update(_PRODUCTS)
    .where(
        _PRODUCTS.c.id == bindparam("product_id"),
        _PRODUCTS.c.stock.is_(None) | (_PRODUCTS.c.stock >= bindparam("quantity")),
    )
    .values(
        # NULL (unlimited) stays NULL
        stock=_PRODUCTS.c.stock - bindparam("quantity"),
        updated_at=bindparam("now", type_=_PRODUCTS.c.updated_at.type),
    )
)


def lock_payment(session: Session, payment_id: str) -> Payment | None:
    return session.scalar(_LOCK_PAYMENT, {"payment_id": payment_id})


def lock_payment_of_intent(session: Session, provider: str, intent_id: str) -> Payment | None:
    """`provider`'s payment with that intent id, locked in the same statement that finds it."""
    return session.scalar(_LOCK_PAYMENT_OF_INTENT, {"provider": provider, "intent_id": intent_id})


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
    _report(session, events.PAYMENT_FAILED, payment, now)
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
    _report(session, events.PAYMENT_REQUIRES_ACTION, payment, now)
    return True


def _report(session: Session, event_type: str, payment: Payment, now: datetime) -> None:
    """Record the event of a payment's change, with the payment as the API shows it now
    (the caller has made every change of the transition)."""
    view = current_view(session, payment)
    events.record(session, event_type, events.resource_json("payment", view), now)


def apply_intent(
    session: Session,
    ctx: RequestContext,
    payment: Payment,
    intent: ProviderIntent,
    now: datetime,
    *,
    invoices: Invoices,
) -> None:
    """Bring a locked payment in line with its provider intent (idempotent)."""
    payment.provider_payment_id = intent.id
    payment.client_secret = intent.client_secret
    if intent.status is IntentStatus.SUCCEEDED:
        payment_succeeded(session, ctx, payment, now, invoices=invoices)
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
    session: Session, ctx: RequestContext, payment: Payment, now: datetime, *, invoices: Invoices
) -> bool:
    """Record that a locked payment succeeded; returns False if it already had. An order
    it pays is invoiced in the same transaction (`invoices`)."""
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
    _report(session, events.PAYMENT_SUCCEEDED, payment, now)
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
            actor_user=ctx.actor_user,
        )
        return True
    # The order as Core statements: a locked read of what decides, one UPDATE of what
    # changes (the unit of work cost more than the two statements it writes).
    order_id = payment.order_id
    rows = session.execute(_LOCK_ORDER_WITH_LINES, {"order_id": order_id}).all()
    order = rows[0]
    amount_paid = order.amount_paid + payment.amount
    if order.status == OrderStatus.PENDING.value:
        shortage = _take_goods(session, order_id, rows, now)
        session.execute(
            _PAY_ORDER,
            {"order_id": order_id, "paid": amount_paid, "now": now, "shortage": shortage},
        )
        audit.record(
            session,
            ctx,
            at=now,
            action="order.paid",
            subject=order_id,
            before={"status": "pending"},
            after={
                "status": OrderStatus.PAID.value,
                "amount_paid": amount_paid,
                "stock_shortage": shortage,
            },
        )
        paid = _paid_order_view(rows, amount_paid, shortage, now)
        events.record(session, events.ORDER_PAID, events.resource_json("order", paid), now)
        invoices.invoice_paid_order(session, _billed(paid), now)
    else:
        # Money arrived for an order that is no longer pending (e.g. cancelled while the
        # shopper was paying). It is recorded, never dropped; staff refund it.
        session.execute(
            update(_ORDERS).where(_ORDERS.c.id == order_id).values(amount_paid=amount_paid)
        )
        audit.record(
            session,
            ctx,
            at=now,
            action="payment.succeeded_on_" + order.status + "_order",
            subject=order_id,
            after={"amount_paid": amount_paid, "payment": payment.id},
        )
    _forget_loaded_order(session, order_id)
    return True


def _paid_order_view(
    rows: Sequence[Any], amount_paid: int, shortage: bool, now: datetime
) -> OrderView:
    """The order as `_PAY_ORDER` leaves it, from its locked read (`rows`, one per line)."""
    order = {c.key: rows[0]._mapping[c] for c in _ORDER_VIEW_COLUMNS}
    order.update(
        status=OrderStatus.PAID.value,
        amount_paid=amount_paid,
        paid_at=now,
        reservation_expires_at=None,
        stock_shortage=shortage,
    )
    lines = sorted(
        (
            {
                "quantity": row.quantity,
                **{name: row._mapping[f"line_{name}"] for name in _LINE_VIEW_COLUMNS},
            }
            for row in rows
            if row.product_id is not None  # the outer join's row of an order without lines
        ),
        key=lambda line: int(line["position"]),
    )
    return OrderView.of_columns(order, lines)


def _billed(order: OrderView) -> PaidOrder:
    """What the invoice of the order just paid bills, from its view (no read back)."""
    assert order.paid_at is not None
    return PaidOrder(
        id=order.id,
        number=order.number or None,
        currency=order.currency,
        shipping_address=order.shipping_address,
        customer_id=order.customer,
        email=order.email,
        paid_at=order.paid_at,
        lines=tuple(
            invoice_line(line.title, line.sku, line.quantity, line.unit_amount, line.amount)
            for line in order.lines
        ),
    )


def _forget_loaded_order(session: Session, order_id: str) -> None:
    """An ORM copy of the order that this session loaded earlier (the wallet path locks it
    to check it is payable) is stale after the Core UPDATE: expire it, so a later read
    loads the row again."""
    for loaded in list(session.identity_map.values()):
        if isinstance(loaded, Order) and loaded.id == order_id:
            session.expire(loaded)


def _take_goods(session: Session, order_id: str, lines: Sequence[Any], now: datetime) -> bool:
    """Take the paid order's goods (`lines`: its lines in SKU order, as read with its
    lock); returns whether any line could not be taken (a stock shortage, for staff)."""
    shortage = False
    for line in lines:  # SKU order, like every other multi-product lock in kassa
        if line.product_id is None:  # the outer join's row of an order without lines
            continue
        if line.unique:
            taken = session.execute(
                _SELL_UNIQUE, {"product_id": line.product_id, "order_id": order_id, "now": now}
            )
        else:
            taken = session.execute(
                _TAKE_STOCK, {"product_id": line.product_id, "quantity": line.quantity, "now": now}
            )
        if getattr(taken, "rowcount", 0) != 1:
            shortage = True
    return shortage
