"""Orders: creation with server-side prices, unique-item reservations, the status machine.

Concurrency: a unique item is claimed under a row lock (`SELECT … FOR UPDATE` on
PostgreSQL, locked in SKU order so two orders never deadlock; on SQLite the write
transaction already holds the database's write lock). Every status change re-reads the
order under a lock and checks the transition, so two racing cancels or a cancel racing a
payment settle on exactly one outcome.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import Select, bindparam, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, selectinload

from kassa.domain.errors import FieldProblem, conflict, invalid, not_found
from kassa.domain.ids import new_id
from kassa.domain.money import normalize_currency
from kassa.domain.orders import (
    LineRequest,
    OrderRefundStatus,
    OrderStatus,
    PricedOrder,
    ProductStatus,
    check_stock,
    order_number,
    price_order,
    refund_status,
    transition,
)
from kassa.domain.payments import IN_FLIGHT_STATUSES
from kassa.domain.roles import sees_only_own_orders
from kassa.services import audit, events
from kassa.services.catalogue import catalogue_entry
from kassa.services.context import Clock, RequestContext
from kassa.services.idempotency import attach_resource
from kassa.services.pagination import ANY_TIME, CreatedRange, Page, paginate
from kassa.storage.database import Database, next_pk, table_of
from kassa.storage.deferred import defer
from kassa.storage.prebuilt import kept
from kassa.storage.tables import Customer, Order, OrderLine, Payment, Product

RESERVATION_EXPIRED = "reservation_expired"
CANCELED_ON_REQUEST = "requested"


@dataclass(frozen=True, slots=True)
class LineView:
    sku: str
    title: str
    unit_amount: int
    quantity: int
    amount: int
    product_status: str


@dataclass(frozen=True, slots=True)
class OrderView:
    id: str
    number: str
    status: str
    currency: str
    subtotal: int
    total: int
    amount_paid: int
    amount_refunded: int
    refund_status: OrderRefundStatus
    refunded_at: datetime | None
    stock_shortage: bool
    disputed: bool
    disputed_at: datetime | None
    customer: str | None
    email: str | None
    lines: tuple[LineView, ...]
    shipping_address: dict[str, Any] | None
    metadata: dict[str, str]
    reservation_expires_at: datetime | None
    cancel_reason: str | None
    created_at: datetime
    paid_at: datetime | None
    fulfilled_at: datetime | None
    canceled_at: datetime | None

    @classmethod
    def of(cls, row: Order) -> OrderView:
        return cls(
            id=row.id,
            number=row.number or "",
            status=row.status,
            currency=row.currency,
            subtotal=row.subtotal,
            total=row.total,
            amount_paid=row.amount_paid,
            amount_refunded=row.amount_refunded,
            refund_status=refund_status(row.amount_paid, row.amount_refunded),
            refunded_at=row.refunded_at,
            stock_shortage=row.stock_shortage,
            disputed=row.disputed,
            disputed_at=row.disputed_at,
            customer=row.customer_id,
            email=row.email,
            lines=tuple(
                LineView(
                    sku=line.sku,
                    title=line.title,
                    unit_amount=line.unit_amount,
                    quantity=line.quantity,
                    amount=line.amount,
                    product_status=line.product_status,
                )
                for line in row.lines
            ),
            shipping_address=row.shipping_address,
            metadata=dict(row.metadata_ or {}),
            reservation_expires_at=row.reservation_expires_at,
            cancel_reason=row.cancel_reason,
            created_at=row.created_at,
            paid_at=row.paid_at,
            fulfilled_at=row.fulfilled_at,
            canceled_at=row.canceled_at,
        )

    @classmethod
    def created(cls, row: dict[str, Any], lines: Sequence[dict[str, Any]]) -> OrderView:
        """The view of an order just inserted from `row` and `lines` (no read back): the
        same mapping as `of`, over the values as they were inserted."""
        return cls.of_columns({**row, **dict.fromkeys(_SET_LATER)}, lines)

    @classmethod
    def of_columns(cls, order: Mapping[str, Any], lines: Sequence[Mapping[str, Any]]) -> OrderView:
        """The view of an order from its columns by name (`metadata` as the column is
        named) and its lines' in position order, without an ORM load: for the writers that
        change an order with Core statements (creation, settlement) and report it."""
        columns = SimpleNamespace(
            **{name: value for name, value in order.items() if name != "metadata"},
            metadata_=order["metadata"],
            lines=[SimpleNamespace(**line) for line in lines],
        )
        return cls.of(cast(Order, columns))


# What an order's insert leaves unset: its later life (payment, refunds, fulfilment).
_SET_LATER = (
    "refunded_at",
    "disputed_at",
    "cancel_reason",
    "paid_at",
    "fulfilled_at",
    "canceled_at",
)


@dataclass(frozen=True, slots=True)
class NewOrder:
    currency: str
    lines: Sequence[LineRequest]
    customer: str | None = None
    email: str | None = None
    shipping_address: dict[str, Any] | None = None
    metadata: dict[str, str] = field(default_factory=dict)


def _summary(row: Order) -> dict[str, Any]:
    return {"status": row.status, "total": row.total, "currency": row.currency}


def lock_order(session: Session, order_id: str, *, nowait: bool = False) -> Order | None:
    """Load an order under a row lock, fresh from the database."""
    return session.scalar(
        select(Order)
        .where(Order.id == order_id)
        .with_for_update(nowait=nowait, key_share=True)
        .execution_options(populate_existing=True)
    )


def payment_in_flight(order_id: Any) -> Any:
    """SQL condition: the order has a payment still open at its provider."""
    return (
        select(Payment.pk)
        .where(
            Payment.order_id == order_id,
            Payment.status.in_([s.value for s in IN_FLIGHT_STATUSES]),
        )
        .exists()
    )


def release_reservations(session: Session, order_id: str) -> None:
    """Give back every unique item this order holds but has not bought.

    The rows are locked in SKU order first, the same order order creation uses, so
    a release and a creation touching the same items cannot deadlock."""
    session.execute(
        select(Product.pk)
        .where(Product.reserved_by_order == order_id)
        .order_by(Product.sku)
        .with_for_update()
    ).all()
    session.execute(
        update(Product)
        .where(
            Product.reserved_by_order == order_id,
            Product.status == ProductStatus.RESERVED.value,
        )
        .values(status=ProductStatus.AVAILABLE.value, reserved_by_order=None, reserved_until=None)
    )


def _require_contact(new: NewOrder) -> None:
    if new.customer is None and not new.email:
        raise invalid(
            "validation_error",
            "an order needs a customer or an e-mail address",
            FieldProblem(("body", "email"), "customer or email is required"),
        )


def _contact_email(session: Session, ctx: RequestContext, new: NewOrder) -> str | None:
    """The order's e-mail address: the one given, else its customer's."""
    if new.customer is None:
        return new.email
    customer = session.scalar(select(Customer).where(Customer.id == new.customer))
    if customer is None or not ctx.may_see(customer.created_by_key):
        # another storefront key's customer does not exist for this one
        raise not_found("customer_not_found", f"no customer {new.customer!r}")
    return new.email or customer.email


def _products_by_sku(dialect: str) -> Any:
    """An order's products, by SKU, each row with the new order's primary key drawn in the
    same statement (`next_pk`: one round trip fewer per order). Built once per dialect:
    every order reads them."""
    products = table_of(Product)
    return kept(
        ("order-products", dialect),
        lambda: select(products, next_pk(Order, dialect).label("next_order_pk")).where(
            products.c.sku.in_(bindparam("skus", expanding=True))
        ),
    )


@dataclass(frozen=True, slots=True)
class _OrderedProducts:
    """The products an order's lines name, the unique ones locked for reservation."""

    # A plain row per product (a Core select: most orders name no unique item, and an
    # ORM load of each product costs more than the order's own insert); a unique one is
    # re-read as a locked ORM object, which reservation changes.
    by_sku: dict[str, Any]
    unique_skus: list[str]  # in SKU order, the order they are locked and reserved in
    order_pk: int  # the new order's primary key, drawn with the products (0: none found)

    @classmethod
    def load(cls, session: Session, lines: Sequence[LineRequest]) -> _OrderedProducts:
        skus = sorted({line.sku for line in lines})
        statement = _products_by_sku(session.get_bind().dialect.name)
        found = session.execute(statement, {"skus": skus}).all()
        by_sku: dict[str, Any] = {p.sku: p for p in found}
        order_pk = int(found[0].next_order_pk) if found else 0
        unique_skus = sorted(sku for sku, p in by_sku.items() if p.unique)
        if unique_skus:  # re-read the unique ones under lock, in a fixed order
            for p in session.scalars(
                select(Product)
                .where(Product.sku.in_(unique_skus))
                .order_by(Product.sku)
                .with_for_update()
                .execution_options(populate_existing=True)
            ):
                by_sku[p.sku] = p
        return cls(by_sku, unique_skus, order_pk)

    def price(self, currency: str, lines: Sequence[LineRequest]) -> PricedOrder:
        """Server-side prices for `lines`, refusing what the catalogue cannot fill."""
        catalogue = {sku: catalogue_entry(p) for sku, p in self.by_sku.items()}
        priced = price_order(currency, lines, catalogue)
        for line in priced.lines:
            check_stock(catalogue[line.sku], line.quantity)
        return priced

    def order_lines(self, order_id: str, priced: PricedOrder) -> list[dict[str, Any]]:
        """The `order_lines` rows for `priced`, in order."""
        return [
            {
                "order_id": order_id,
                "position": position,
                "product_id": self.by_sku[line.sku].id,
                "sku": line.sku,
                "title": line.title,
                "unit_amount": line.unit_amount,
                "quantity": line.quantity,
                "amount": line.amount,
                "product_status": self._status_after_ordering(line.sku),
                "unique": self.by_sku[line.sku].unique,
            }
            for position, line in enumerate(priced.lines)
        ]

    def _status_after_ordering(self, sku: str) -> str:
        """The product's status as the order leaves it: a unique item is reserved for it."""
        if sku in self.unique_skus:
            return ProductStatus.RESERVED.value
        return str(self.by_sku[sku].status)


class Orders:
    def __init__(self, db: Database, clock: Clock, *, reservation_ttl_s: int) -> None:
        self._db = db
        self._clock = clock
        self._ttl = timedelta(seconds=reservation_ttl_s)

    # -- creation ---------------------------------------------------------------------

    def create(self, ctx: RequestContext, new: NewOrder) -> OrderView:
        currency = normalize_currency(new.currency)
        _require_contact(new)
        now = self._clock()
        with self._db.transaction() as session:
            email = _contact_email(session, ctx, new)
            products = _OrderedProducts.load(session, new.lines)
            priced = products.price(currency, new.lines)
            order_id = new_id("ord")
            pk = products.order_pk  # found products, so drawn (`price` refused none)
            row: dict[str, Any] = {
                "pk": pk,
                "id": order_id,
                "number": order_number(pk),
                "status": OrderStatus.PENDING.value,
                "currency": currency,
                "subtotal": priced.subtotal.amount,
                "total": priced.total.amount,
                "amount_paid": 0,
                "amount_refunded": 0,
                "stock_shortage": False,
                "disputed": False,
                "customer_id": new.customer,
                "email": email,
                "shipping_address": new.shipping_address,
                "metadata": dict(new.metadata),
                "created_by_key": ctx.actor_key_id,
                "reservation_expires_at": (now + self._ttl) if products.unique_skus else None,
                "created_at": now,
            }
            # The order and its lines (snapshots of the catalogue as it is now) go in at
            # commit, with its audit record, its event and the stored answer: on
            # PostgreSQL one statement (`storage.deferred`). Nothing in this transaction
            # reads them back (a unique item's reservation names the order by its id).
            defer(session, Order, row)
            lines = products.order_lines(order_id, priced)
            for line in lines:
                defer(session, OrderLine, line)
            for sku in products.unique_skus:
                self._reserve(session, ctx, products.by_sku[sku], order_id, now)
            audit.record(
                session,
                ctx,
                at=now,
                action="order.created",
                subject=order_id,
                after={"status": row["status"], "total": row["total"], "currency": currency},
            )
            attach_resource(session, "order", order_id)
            view = OrderView.created(row, lines)
            events.record(session, events.ORDER_CREATED, events.resource_json("order", view), now)
            return view

    def _reserve(
        self, session: Session, ctx: RequestContext, product: Product, order_id: str, now: datetime
    ) -> None:
        """Claim a locked unique product for `order_id`, taking over an expired hold."""
        if product.status == ProductStatus.RESERVED.value and (
            product.reserved_until is not None and product.reserved_until <= now
        ):
            holder = product.reserved_by_order
            if holder is not None:
                self._take_over_expired(session, ctx, product, holder, now)
            session.refresh(product)
        if product.status != ProductStatus.AVAILABLE.value:
            raise conflict("item_unavailable", f"{product.sku!r} is {product.status}")
        product.status = ProductStatus.RESERVED.value
        product.reserved_by_order = order_id
        product.reserved_until = now + self._ttl
        product.updated_at = now

    def _take_over_expired(
        self, session: Session, ctx: RequestContext, product: Product, holder: str, now: datetime
    ) -> None:
        """Cancel the order whose hold on `product` expired.

        We already hold product locks, and cancels and payments lock the order first;
        waiting for the holder's lock could deadlock, so we try it without waiting: if
        someone is acting on that order right now, the item counts as unavailable."""
        try:
            with session.begin_nested():
                held_by = lock_order(session, holder, nowait=True)
        except OperationalError as exc:
            raise conflict(
                "item_unavailable", f"{product.sku!r} is being settled by another order"
            ) from exc
        if held_by is not None and held_by.status == OrderStatus.PENDING.value:
            if session.scalar(select(payment_in_flight(holder))):
                raise conflict("item_unavailable", f"{product.sku!r} is being paid for")
            self._cancel_locked(session, ctx, holder, now, RESERVATION_EXPIRED)

    # -- reading ----------------------------------------------------------------------

    def _visible(self, ctx: RequestContext, row: Order | None, order_id: str) -> Order:
        if row is None or (
            sees_only_own_orders(ctx.role) and row.created_by_key != ctx.actor_key_id
        ):
            raise not_found("order_not_found", f"no order {order_id!r}")
        return row

    def get(self, ctx: RequestContext, order_id: str) -> OrderView:
        with self._db.transaction(read_only=True) as session:
            row = session.scalar(select(Order).where(Order.id == order_id))
            return OrderView.of(self._visible(ctx, row, order_id))

    def by_number(self, ctx: RequestContext, number: str) -> OrderView:
        """The order numbered `number` ("K-000042"; the dashboard's search), found through
        the number's unique index."""
        with self._db.transaction(read_only=True) as session:
            row = session.scalar(select(Order).where(Order.number == number))
            return OrderView.of(self._visible(ctx, row, number))

    def numbers_of(self, ctx: RequestContext, order_ids: Iterable[str]) -> dict[str, str]:
        """{order id: number} of the orders among `order_ids` that `ctx` may see, in one
        query: a page listing payments links each to its order by number without reading
        the orders one by one."""
        ids = sorted(set(order_ids))
        if not ids:
            return {}
        stmt = select(Order.id, Order.number).where(Order.id.in_(ids))
        if sees_only_own_orders(ctx.role):
            stmt = stmt.where(Order.created_by_key == ctx.actor_key_id)
        with self._db.transaction(read_only=True) as session:
            return {str(oid): str(number) for oid, number in session.execute(stmt) if number}

    def list(
        self,
        ctx: RequestContext,
        *,
        limit: int,
        starting_after: str | None = None,
        customer: str | None = None,
        status: str | None = None,
        email: str | None = None,
        created: CreatedRange = ANY_TIME,
    ) -> Page[OrderView]:
        stmt: Select[Any] = created.apply(
            select(Order).options(selectinload(Order.lines)), Order.created_at
        )
        if sees_only_own_orders(ctx.role):
            stmt = stmt.where(Order.created_by_key == ctx.actor_key_id)
        if customer:
            stmt = stmt.where(Order.customer_id == customer)
        if status:
            stmt = stmt.where(Order.status == status)
        if email:
            stmt = stmt.where(Order.email == email)
        cursor_scope = (
            Order.created_by_key == ctx.actor_key_id if sees_only_own_orders(ctx.role) else None
        )
        with self._db.transaction(read_only=True) as session:
            page = paginate(session, Order, stmt, limit, starting_after, cursor_scope)
            return page.map(OrderView.of)

    # -- transitions ------------------------------------------------------------------

    def cancel(self, ctx: RequestContext, order_id: str) -> OrderView:
        now = self._clock()
        with self._db.transaction() as session:
            self._visible(ctx, lock_order(session, order_id), order_id)
            view = self._cancel_locked(session, ctx, order_id, now, CANCELED_ON_REQUEST)
            attach_resource(session, "order", order_id)
            return view

    def _cancel_locked(
        self, session: Session, ctx: RequestContext, order_id: str, now: datetime, reason: str
    ) -> OrderView:
        """Cancel a pending order (every cancel ends here: a request, an expired hold taken
        over, the reservation sweep) and report it: `order.canceled`, with the order as
        it is now."""
        row = lock_order(session, order_id)
        if row is None:
            raise not_found("order_not_found", f"no order {order_id!r}")
        before = _summary(row)
        row.status = transition(OrderStatus(row.status), OrderStatus.CANCELED).value
        if session.scalar(select(payment_in_flight(order_id))):
            raise conflict(
                "payment_in_progress", "a payment for this order is still open at its provider"
            )
        row.canceled_at = now
        row.cancel_reason = reason
        row.reservation_expires_at = None
        release_reservations(session, order_id)
        audit.record(
            session,
            ctx,
            at=now,
            action="order.canceled",
            subject=order_id,
            before=before,
            after={**_summary(row), "reason": reason},
        )
        view = OrderView.of(row)
        events.record(session, events.ORDER_CANCELED, events.resource_json("order", view), now)
        return view

    def fulfill(self, ctx: RequestContext, order_id: str) -> OrderView:
        now = self._clock()
        with self._db.transaction() as session:
            row = self._visible(ctx, lock_order(session, order_id), order_id)
            before = _summary(row)
            row.status = transition(OrderStatus(row.status), OrderStatus.FULFILLED).value
            row.fulfilled_at = now
            audit.record(
                session,
                ctx,
                at=now,
                action="order.fulfilled",
                subject=order_id,
                before=before,
                after=_summary(row),
            )
            attach_resource(session, "order", order_id)
            view = OrderView.of(row)
            events.record(session, events.ORDER_FULFILLED, events.resource_json("order", view), now)
            return view

    def release_expired_reservations(self, ctx: RequestContext, batch: int = 100) -> int:
        """Cancel pending orders whose reservations ran out, freeing their items.

        Each order is cancelled in its own transaction, re-checked under its lock, so a
        payment that lands at the same moment wins or loses cleanly."""
        now = self._clock()
        with self._db.transaction(read_only=True) as session:
            due = list(
                session.scalars(
                    select(Order.id)
                    .where(
                        Order.status == OrderStatus.PENDING.value,
                        Order.reservation_expires_at <= now,
                        ~payment_in_flight(Order.id),
                    )
                    .order_by(Order.reservation_expires_at)
                    .limit(batch)
                )
            )
        released = 0
        for order_id in due:
            with self._db.transaction() as session:
                row = lock_order(session, order_id)
                if (
                    row is None
                    or row.status != OrderStatus.PENDING.value
                    or row.reservation_expires_at is None
                    or row.reservation_expires_at > now
                    or session.scalar(select(payment_in_flight(order_id)))
                ):
                    continue
                self._cancel_locked(session, ctx, order_id, now, RESERVATION_EXPIRED)
                released += 1
        return released
