"""Where each CSV export's rows come from, read in batches so memory holds one batch.

An export source hands out its rows a batch at a time from a session the caller holds
open (one snapshot for the whole export, see `services.exports`). Two kinds:

- `TableExport`: one query over kassa's tables, its columns labelled with the contract's
  names in the contract's order (checked when it is registered), streamed from a
  server-side cursor (`yield_per`: PostgreSQL fetches `BATCH_ROWS` rows at a time from a
  named cursor; SQLite steps through its statement), in creation order (the primary key).
  A timed one keeps the rows created in the period (`created >= start AND created < end`).
- `RowsExport`: rows another service computes (the KPI daily series), from a callable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any, Protocol

from sqlalchemy import Select, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from kassa.domain.calendar import Period
from kassa.services.csv_cells import Cell
from kassa.storage.tables import Customer, Order, Payment, Product, Refund

BATCH_ROWS = 1000

Batch = Sequence[Sequence[Cell]]


class ExportSource(Protocol):
    """What the export registry needs of a source."""

    @property
    def timed(self) -> bool:
        """Whether the export takes a period (`window`, or `from` and `to`)."""
        ...

    def batches(self, session: Session, period: Period | None) -> Iterator[Batch]:
        """The rows, a batch at a time, each row's cells in the contract's column order."""
        ...

    def count(self, session: Session, period: Period | None) -> int | None:
        """How many rows `batches` will give, if that is cheap to know; else None."""
        ...


@dataclass(frozen=True)
class TableExport:
    """An export of one query's rows; `created` is the creation time a period filters on
    (None: the export takes no period), `key` the primary key that orders them."""

    query: Select[*tuple[Any, ...]]
    key: InstrumentedAttribute[int]
    created: InstrumentedAttribute[Any] | None

    @property
    def timed(self) -> bool:
        return self.created is not None

    @property
    def columns(self) -> list[str]:
        return [str(column.key) for column in self.query.selected_columns]

    def _within(self, stmt: Select[Any], period: Period | None) -> Select[Any]:
        if self.created is None or period is None:
            return stmt
        return stmt.where(self.created >= period.start, self.created < period.end)

    def batches(self, session: Session, period: Period | None) -> Iterator[Batch]:
        stmt = self._within(self.query, period).order_by(self.key)
        # On the session's connection, as Core: the ORM's row loading cost a tenth of an
        # export's time and adds nothing to plain columns.
        result = session.connection().execute(stmt.execution_options(yield_per=BATCH_ROWS))
        try:
            yield from result.partitions()
        finally:  # also when the consumer stops early: the cursor goes now, not at GC
            result.close()

    def count(self, session: Session, period: Period | None) -> int | None:
        counted = self._within(select(func.count()).select_from(self.key.class_), period)
        return int(session.scalar(counted) or 0)


@dataclass(frozen=True)
class RowsExport:
    """An export whose rows a callable computes from the snapshot's session and the period:
    how another service (the KPI daily series) plugs in without kassa reading its tables
    twice. `rows` may be a generator; it is consumed a batch at a time."""

    rows: Callable[[Session, Period | None], Iterable[Sequence[Cell]]]
    timed: bool = True

    def batches(self, session: Session, period: Period | None) -> Iterator[Batch]:
        rows = iter(self.rows(session, period))
        while batch := list(islice(rows, BATCH_ROWS)):
            yield batch

    def count(self, session: Session, period: Period | None) -> int | None:
        return None


def _failure(model: type[Payment] | type[Refund], key: str) -> Any:
    """A field of a payment's or refund's `failure` JSON, as text (NULL when none)."""
    return model.failure[key].as_string()


TABLE_EXPORTS: dict[str, TableExport] = {
    "orders": TableExport(
        select(
            Order.id.label("id"),
            Order.number.label("number"),
            Order.status.label("status"),
            Order.currency.label("currency"),
            Order.subtotal.label("subtotal"),
            Order.total.label("total"),
            Order.amount_paid.label("amount_paid"),
            Order.amount_refunded.label("amount_refunded"),
            Order.customer_id.label("customer_id"),
            Order.email.label("email"),
            Order.cancel_reason.label("cancel_reason"),
            Order.stock_shortage.label("stock_shortage"),
            Order.disputed.label("disputed"),
            Order.created_at.label("created_at"),
            Order.paid_at.label("paid_at"),
            Order.fulfilled_at.label("fulfilled_at"),
            Order.canceled_at.label("canceled_at"),
            Order.refunded_at.label("refunded_at"),
            Order.disputed_at.label("disputed_at"),
        ),
        key=Order.pk,
        created=Order.created_at,
    ),
    "payments": TableExport(
        select(
            Payment.id.label("id"),
            Payment.order_id.label("order_id"),
            Payment.top_up_customer_id.label("top_up_customer_id"),
            Payment.provider.label("provider"),
            Payment.provider_payment_id.label("provider_payment_id"),
            Payment.status.label("status"),
            Payment.amount.label("amount"),
            Payment.currency.label("currency"),
            _failure(Payment, "type").label("failure_type"),
            _failure(Payment, "code").label("failure_code"),
            _failure(Payment, "decline_code").label("decline_code"),
            Payment.retry_count.label("retry_count"),
            Payment.recovered_by_retry.label("recovered_by_retry"),
            Payment.created_at.label("created_at"),
            Payment.succeeded_at.label("succeeded_at"),
            Payment.updated_at.label("updated_at"),
        ),
        key=Payment.pk,
        created=Payment.created_at,
    ),
    # One row per refund part: a refund request split across payments is one movement of
    # money per payment; `refund_id` is the request's id, as the API shows it.
    "refunds": TableExport(
        select(
            Refund.id.label("id"),
            func.coalesce(Refund.group_id, Refund.id).label("refund_id"),
            Refund.order_id.label("order_id"),
            Refund.payment_id.label("payment_id"),
            Refund.status.label("status"),
            Refund.amount.label("amount"),
            Refund.currency.label("currency"),
            Refund.destination.label("destination"),
            Refund.provider.label("provider"),
            Refund.provider_refund_id.label("provider_refund_id"),
            Refund.origin.label("origin"),
            Refund.reason.label("reason"),
            _failure(Refund, "code").label("failure_code"),
            Refund.created_at.label("created_at"),
            Refund.updated_at.label("updated_at"),
        ),
        key=Refund.pk,
        created=Refund.created_at,
    ),
    "customers": TableExport(
        select(
            Customer.id.label("id"),
            Customer.email.label("email"),
            Customer.name.label("name"),
            Customer.created_at.label("created_at"),
        ),
        key=Customer.pk,
        created=Customer.created_at,
    ),
    # The catalogue as it is now (prices, stock and status are today's): no period.
    "products": TableExport(
        select(
            Product.id.label("id"),
            Product.sku.label("sku"),
            Product.title.label("title"),
            Product.status.label("status"),
            Product.currency.label("currency"),
            Product.unit_amount.label("unit_amount"),
            Product.stock.label("stock"),
            Product.unique.label("unique"),
            Product.created_at.label("created_at"),
            Product.updated_at.label("updated_at"),
        ),
        key=Product.pk,
        created=None,
    ),
}
