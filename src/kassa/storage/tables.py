"""The relational schema. Amounts are BIGINT minor units beside a 3-letter currency."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BIGINT on PostgreSQL, but INTEGER on SQLite so that it is the rowid alias.
PK = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend (SQLite has no time zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are refused: pass an aware UTC time")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


UTC_TIME = UtcDateTime()


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


# `Index.info` key naming the one dialect an index exists on; migrations/env.py compares
# such an index with the database only there.
ONLY_ON = "only_on"


def list_indexes(table: str, *columns: str) -> tuple[Index, ...]:
    """The index behind each list filter on `columns` of `table` (migration 0008).

    Lists page newest first (`ORDER BY pk DESC`, from a cursor `pk < …`). On PostgreSQL
    that takes (column, pk): with the column alone it would fetch every matching row and
    sort them for each page. On SQLite an index on the column alone already is (column,
    rowid), and naming pk would only sway its planner, which keeps no statistics, towards
    these indexes and away from a more selective one (an order's payments, filtered by
    status too). So each dialect gets its own, created (`ddl_if`) and compared
    (`ONLY_ON`) there alone; the SQLite ones keep their names from earlier migrations."""
    indexes: list[Index] = []
    for column in columns:
        on_postgres = Index(f"ix_{table}_{column}_pk", column, "pk", info={ONLY_ON: "postgresql"})
        on_sqlite = Index(f"ix_{table}_{column}", column, info={ONLY_ON: "sqlite"})
        indexes += [on_postgres.ddl_if(dialect="postgresql"), on_sqlite.ddl_if(dialect="sqlite")]
    return tuple(indexes)


class ApiKey(Base):
    __tablename__ = "api_keys"
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    secret_prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTC_TIME)
    revoked_at: Mapped[datetime | None] = mapped_column(UTC_TIME)
    __table_args__ = (
        CheckConstraint("role IN ('admin', 'ops', 'analyst', 'storefront')", name="role"),
    )


class Product(Base):
    __tablename__ = "products"
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    sku: Mapped[str] = mapped_column(String(100), unique=True)
    title: Mapped[str] = mapped_column(String(500))
    unit_amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    stock: Mapped[int | None] = mapped_column(BigInteger)
    unique: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(20))
    reserved_by_order: Mapped[str | None] = mapped_column(String(40))
    reserved_until: Mapped[datetime | None] = mapped_column(UTC_TIME)
    created_at: Mapped[datetime] = mapped_column(UTC_TIME)
    updated_at: Mapped[datetime] = mapped_column(UTC_TIME)
    __table_args__ = (
        CheckConstraint("unit_amount >= 0", name="unit_amount_non_negative"),
        CheckConstraint("stock IS NULL OR stock >= 0", name="stock_non_negative"),
        CheckConstraint("status IN ('available', 'reserved', 'sold')", name="status"),
    )


class Customer(Base):
    __tablename__ = "customers"
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    email: Mapped[str] = mapped_column(String(320), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    created_by_key: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTC_TIME)

    # `GET /v1/customers?email=` matches whatever the case.
    __table_args__ = (Index("ix_customers_email_lower", func.lower(email)),)


class Order(Base):
    __tablename__ = "orders"
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    number: Mapped[str | None] = mapped_column(String(20), unique=True)
    status: Mapped[str] = mapped_column(String(20))
    currency: Mapped[str] = mapped_column(String(3))
    subtotal: Mapped[int] = mapped_column(BigInteger)
    total: Mapped[int] = mapped_column(BigInteger)
    amount_paid: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded_at: Mapped[datetime | None] = mapped_column(UTC_TIME)
    stock_shortage: Mapped[bool] = mapped_column(Boolean, default=False)
    disputed: Mapped[bool] = mapped_column(Boolean, default=False)
    disputed_at: Mapped[datetime | None] = mapped_column(UTC_TIME)
    customer_id: Mapped[str | None] = mapped_column(ForeignKey("customers.id"))
    email: Mapped[str | None] = mapped_column(String(320))
    shipping_address: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSON, default=dict)
    created_by_key: Mapped[str | None] = mapped_column(String(40))
    reservation_expires_at: Mapped[datetime | None] = mapped_column(UTC_TIME)
    cancel_reason: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTC_TIME, index=True)
    paid_at: Mapped[datetime | None] = mapped_column(UTC_TIME)
    fulfilled_at: Mapped[datetime | None] = mapped_column(UTC_TIME)
    canceled_at: Mapped[datetime | None] = mapped_column(UTC_TIME)
    # Loaded when read (a view, an invoice), not with every order: most loads of an order
    # are a row lock to change its status, and lines they never read cost a query each.
    # Lists ask for them with selectinload (one query per page).
    lines: Mapped[list[OrderLine]] = relationship(
        back_populates="order", order_by="OrderLine.position", lazy="select"
    )
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'paid', 'fulfilled', 'canceled')", name="status"),
        CheckConstraint("total >= 0 AND subtotal >= 0", name="totals_non_negative"),
        CheckConstraint("amount_paid >= 0", name="paid_non_negative"),
        CheckConstraint(
            "amount_refunded >= 0 AND amount_refunded <= amount_paid", name="refund_within_paid"
        ),
        CheckConstraint("customer_id IS NOT NULL OR email IS NOT NULL", name="has_buyer"),
        Index("ix_orders_pending_reservations", "status", "reservation_expires_at"),
        # a storefront key's own orders are its created_by_key
        *list_indexes("orders", "email", "customer_id", "status", "created_by_key"),
    )


class OrderLine(Base):
    __tablename__ = "order_lines"
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    # Looked up through uq_order_lines_order_position, whose leading column it is.
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"))
    position: Mapped[int] = mapped_column(Integer)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"))
    sku: Mapped[str] = mapped_column(String(100))
    title: Mapped[str] = mapped_column(String(500))
    unit_amount: Mapped[int] = mapped_column(BigInteger)
    quantity: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)
    product_status: Mapped[str] = mapped_column(String(20))
    unique: Mapped[bool] = mapped_column(Boolean, default=False)
    order: Mapped[Order] = relationship(back_populates="lines")
    __table_args__ = (
        UniqueConstraint("order_id", "position", name="uq_order_lines_order_position"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("amount = unit_amount * quantity", name="amount_is_price_times_qty"),
    )


class IdempotencyKey(Base):
    """One row per (API key, Idempotency-Key): the first request's fingerprint and answer."""

    __tablename__ = "idempotency_keys"
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    api_key_id: Mapped[str] = mapped_column(String(40))
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(20))
    locked_at: Mapped[datetime] = mapped_column(UTC_TIME)
    resource_type: Mapped[str | None] = mapped_column(String(40))
    resource_id: Mapped[str | None] = mapped_column(String(40))
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_headers: Mapped[dict[str, str] | None] = mapped_column(JSON)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTC_TIME, index=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTC_TIME)
    __table_args__ = (
        UniqueConstraint("api_key_id", "key", name="uq_idempotency_keys_scope"),
        CheckConstraint("state IN ('in_progress', 'completed')", name="state"),
    )


class AuditRecord(Base):
    """Append-only: database triggers (see the migrations) refuse UPDATE and DELETE."""

    __tablename__ = "audit_log"
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    actor_key_id: Mapped[str] = mapped_column(String(40))
    action: Mapped[str] = mapped_column(String(60))
    # as long as a provider event id (a refused event is audited under it): migration 0020
    subject_id: Mapped[str] = mapped_column(String(100))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    request_id: Mapped[str | None] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTC_TIME)
    # the staff user (`usr_…`) who acted through the dashboard (migration 0016)
    actor_user: Mapped[str | None] = mapped_column(String(40))
    __table_args__ = list_indexes("audit_log", "subject_id", "action", "actor_key_id", "actor_user")


# -- payments -------------------------------------------------------------------------------


class Payment(Base):
    __tablename__ = "payments"
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    order_id: Mapped[str | None] = mapped_column(ForeignKey("orders.id"), index=True)
    # A wallet top-up pays no order: it credits this customer's wallet.
    top_up_customer_id: Mapped[str | None] = mapped_column(ForeignKey("customers.id"))
    provider: Mapped[str] = mapped_column(String(20))
    provider_payment_id: Mapped[str | None] = mapped_column(String(100), index=True)
    idempotency_base: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(20))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    payment_method: Mapped[str | None] = mapped_column(String(200))
    client_secret: Mapped[str | None] = mapped_column(String(200))
    next_action: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    failure: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    retry_count: Mapped[int] = mapped_column(Integer, default=0)
    recovered_by_retry: Mapped[bool] = mapped_column(Boolean, default=False)
    orchestration_ms: Mapped[int | None] = mapped_column(Integer)
    no_retry_reason: Mapped[str | None] = mapped_column(String(40))
    created_by_key: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTC_TIME, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTC_TIME)
    succeeded_at: Mapped[datetime | None] = mapped_column(UTC_TIME)
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(
            "status IN ('processing', 'requires_action', 'succeeded', 'failed', 'canceled')",
            name="status",
        ),
        UniqueConstraint("provider", "provider_payment_id", name="uq_payments_provider_intent"),
        CheckConstraint(
            "(order_id IS NULL) <> (top_up_customer_id IS NULL)", name="pays_order_or_wallet"
        ),
        *list_indexes("payments", "status"),
    )


class _AttemptColumns:
    """One provider call as the orchestrator records it (services.orchestrator.Attempt)."""

    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(20))
    number: Mapped[int] = mapped_column(Integer)
    operation: Mapped[str] = mapped_column(String(20))
    started_at: Mapped[datetime] = mapped_column(UTC_TIME)
    duration_ms: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(20))
    error_type: Mapped[str | None] = mapped_column(String(40))
    code: Mapped[str | None] = mapped_column(String(60))
    decline_code: Mapped[str | None] = mapped_column(String(60))
    retry_delay_ms: Mapped[int | None] = mapped_column(Integer)
    gateway_failure: Mapped[bool] = mapped_column(Boolean, default=False)


class PaymentAttempt(_AttemptColumns, Base):
    """One provider call made while orchestrating a payment; gateway health reads these
    (and the refund attempts), payment analytics only these."""

    __tablename__ = "payment_attempts"
    # Looked up through uq_payment_attempts_number, whose leading column it is.
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"))
    __table_args__ = (
        UniqueConstraint("payment_id", "number", name="uq_payment_attempts_number"),
        Index("ix_payment_attempts_provider_time", "provider", "started_at"),
    )


class RefundAttempt(_AttemptColumns, Base):
    """One provider call made while refunding a refund part (migration 0007)."""

    __tablename__ = "refund_attempts"
    # Looked up through uq_refund_attempts_number, whose leading column it is.
    refund_id: Mapped[str] = mapped_column(ForeignKey("refunds.id"))
    __table_args__ = (
        UniqueConstraint("refund_id", "number", name="uq_refund_attempts_number"),
        Index("ix_refund_attempts_provider_time", "provider", "started_at"),
    )


class GatewayStateRow(Base):
    """The last health verdict per provider, kept for hysteresis across processes."""

    __tablename__ = "gateway_states"
    provider: Mapped[str] = mapped_column(String(20), primary_key=True)
    state: Mapped[str] = mapped_column(String(20))
    changed_at: Mapped[datetime] = mapped_column(UTC_TIME)


# -- provider webhooks and background jobs ------------------------------------------------


class ProviderEvent(Base):
    """A verified provider event, stored once per (provider, event id)."""

    __tablename__ = "provider_events"
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(20))
    event_id: Mapped[str] = mapped_column(String(100))
    type: Mapped[str] = mapped_column(String(100), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    signed_at: Mapped[datetime] = mapped_column(UTC_TIME)
    # Indexed for pruning (services/pruning.py): the oldest applied events first.
    received_at: Mapped[datetime] = mapped_column(UTC_TIME, index=True)
    applied_at: Mapped[datetime | None] = mapped_column(UTC_TIME)
    outcome: Mapped[str | None] = mapped_column(String(200))
    deliveries: Mapped[int] = mapped_column(Integer, default=1)
    __table_args__ = (
        UniqueConstraint("provider", "event_id", name="uq_provider_events_provider_event"),
    )


JOBS_DUE_WHERE = "state IN ('queued', 'running')"


class Job(Base):
    """The durable job queue (an outbox: jobs are enqueued in the transaction whose state
    change causes them). States: queued -> running -> done, or back to queued with a
    backoff, or dead after `max_attempts`."""

    __tablename__ = "jobs"
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(60), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    run_after: Mapped[datetime] = mapped_column(UTC_TIME)
    locked_by: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None] = mapped_column(UTC_TIME)
    last_error: Mapped[str | None] = mapped_column(Text)
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTC_TIME)
    finished_at: Mapped[datetime | None] = mapped_column(UTC_TIME)
    __table_args__ = (
        CheckConstraint("state IN ('queued', 'running', 'done', 'dead')", name="state"),
        Index("ix_jobs_claimable", "state", "run_after"),
        # what the worker's claim scans (migration 0009): the live queue only
        Index(
            "ix_jobs_due",
            "run_after",
            "pk",
            postgresql_where=text(JOBS_DUE_WHERE),
            sqlite_where=text(JOBS_DUE_WHERE),
        ),
    )


class Refund(Base):
    __tablename__ = "refunds"
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    payment_id: Mapped[str | None] = mapped_column(ForeignKey("payments.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(20))
    destination: Mapped[str] = mapped_column(String(20))
    provider: Mapped[str | None] = mapped_column(String(20))
    provider_refund_id: Mapped[str | None] = mapped_column(String(100))
    origin: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(String(500))
    # One refund request split across several payments is one group; its first part's id
    # is the group's (and the API object's) id.
    group_id: Mapped[str | None] = mapped_column(String(40), index=True)
    idempotency_base: Mapped[str | None] = mapped_column(String(300))
    failure: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_by_key: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTC_TIME, index=True)
    updated_at: Mapped[datetime | None] = mapped_column(UTC_TIME)
    # When it became `succeeded` (migration 0011; set by refunds.mark_refund_succeeded):
    # revenue KPIs count a refund on that day.
    succeeded_at: Mapped[datetime | None] = mapped_column(UTC_TIME)
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="status"),
        CheckConstraint("destination IN ('original', 'wallet')", name="destination"),
        UniqueConstraint("provider", "provider_refund_id", name="uq_refunds_provider_refund"),
    )


# -- customer wallets -------------------------------------------------------------------


class WalletBalance(Base):
    """The running balance per customer and currency. Always equal to the sum of that
    wallet's entries (written in the same transaction; `kassa check` verifies)."""

    __tablename__ = "wallet_balances"
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    balance: Mapped[int] = mapped_column(BigInteger)
    lifetime_paid: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTC_TIME)


class WalletEntry(Base):
    """Append-only: a change to a wallet, never updated or deleted."""

    __tablename__ = "wallet_entries"
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(20))
    reference: Mapped[str | None] = mapped_column(String(60))
    reason: Mapped[str | None] = mapped_column(String(500))
    actor_key_id: Mapped[str | None] = mapped_column(String(40))
    # the staff user (`usr_…`) behind a dashboard change (migration 0016)
    actor_user: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTC_TIME)
    __table_args__ = (
        Index("ix_wallet_entries_wallet", "customer_id", "currency", "pk"),
        CheckConstraint("kind IN ('top_up', 'payment', 'refund', 'adjustment')", name="kind"),
        UniqueConstraint("kind", "reference", name="uq_wallet_entries_kind_reference"),
    )


# -- invoices and credit notes ----------------------------------------------------------


class DocumentCounter(Base):
    """The last number issued per series and year. Incremented under its row lock in the
    transaction that inserts the document, so numbers are gap-free and never reused."""

    __tablename__ = "document_counters"
    series: Mapped[str] = mapped_column(String(10), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_number: Mapped[int] = mapped_column(BigInteger)


class IssuedDocument(Base):
    """An invoice (for a paid order) or a credit note (for a succeeded refund). Immutable:
    `content` is the complete printed document, frozen when issued; the database refuses
    UPDATE and DELETE (see migration 0005)."""

    __tablename__ = "documents"
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    series: Mapped[str] = mapped_column(String(10))
    year: Mapped[int] = mapped_column(Integer)
    sequence: Mapped[int] = mapped_column(BigInteger)
    number: Mapped[str] = mapped_column(String(40), unique=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    # Set only on invoices: one invoice per order.
    invoiced_order_id: Mapped[str | None] = mapped_column(ForeignKey("orders.id"), unique=True)
    # Set only on credit notes: one credit note per refund.
    refund_id: Mapped[str | None] = mapped_column(ForeignKey("refunds.id"), unique=True)
    currency: Mapped[str] = mapped_column(String(3))
    total: Mapped[int] = mapped_column(BigInteger)
    tax: Mapped[int] = mapped_column(BigInteger)
    content: Mapped[dict[str, Any]] = mapped_column(JSON)
    issued_at: Mapped[datetime] = mapped_column(UTC_TIME, index=True)
    __table_args__ = (
        CheckConstraint("kind IN ('invoice', 'credit_note')", name="kind"),
        CheckConstraint(
            "(kind = 'invoice' AND invoiced_order_id IS NOT NULL AND refund_id IS NULL) OR "
            "(kind = 'credit_note' AND refund_id IS NOT NULL AND invoiced_order_id IS NULL)",
            name="subject",
        ),
        CheckConstraint("sequence > 0 AND total >= 0 AND tax >= 0", name="amounts"),
        UniqueConstraint("series", "year", "sequence", name="uq_documents_series_year_sequence"),
        # Invoices and credit notes are listed apart, newest first (migration 0008). On
        # PostgreSQL only: the few credit notes would otherwise be found by walking every
        # invoice; SQLite's planner would take it for an order's documents too.
        Index("ix_documents_kind_pk", "kind", "pk", info={ONLY_ON: "postgresql"}).ddl_if(
            dialect="postgresql"
        ),
    )


# -- check findings (monitoring: what `kassa check` found, kept and followed up) ---------

OPEN_FINDING = "status = 'open'"


class CheckFinding(Base):
    """One episode of one problem a reconciliation check found: open from the run that
    first saw it until the first complete run of its check that no longer does.

    A finding is named by (check, subject), and at most one episode of it is open at a
    time (the partial unique index). A problem that comes back after it was resolved opens
    a new row with its own id: the resolved row stays as history, and an acknowledgement
    (who looked at it, their note) belongs to the episode it was given for, so it never
    silences a recurrence. `scope` says which run of the check can vouch for it (the
    provider, for `provider_records`; empty for the database checks): only a run that
    completed the check for that scope resolves it."""

    __tablename__ = "check_findings"
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    check_name: Mapped[str] = mapped_column(String(40))  # `check` is a reserved word in SQL
    subject: Mapped[str] = mapped_column(String(200))
    scope: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20))
    detail: Mapped[str] = mapped_column(Text)
    first_seen_at: Mapped[datetime] = mapped_column(UTC_TIME)
    last_seen_at: Mapped[datetime] = mapped_column(UTC_TIME)
    resolved_at: Mapped[datetime | None] = mapped_column(UTC_TIME)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTC_TIME)
    acknowledged_by: Mapped[str | None] = mapped_column(String(40))
    note: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (
        CheckConstraint("status IN ('open', 'resolved')", name="status"),
        CheckConstraint(
            "(status = 'open' AND resolved_at IS NULL) OR "
            "(status = 'resolved' AND resolved_at IS NOT NULL)",
            name="resolution",
        ),
        Index(
            "uq_check_findings_open",
            "check_name",
            "subject",
            unique=True,
            postgresql_where=text(OPEN_FINDING),
            sqlite_where=text(OPEN_FINDING),
        ),
        *list_indexes("check_findings", "status", "check_name"),
    )


class CheckRunMark(Base):
    """How many runs of the checks there were, and when the last began, per kind:

    - `stored`: every run that stored its findings. The upsert that counts one takes this
      row's lock for the rest of the storing transaction, so two runs at once (the worker
      and `kassa check`) store their findings one after the other.
    - `periodic`: the worker's scheduled runs. A worker claims the next one with one
      conditional upsert when the last began at least `KASSA_CHECK_INTERVAL_S` ago, so
      however many workers run, one of them runs the checks once per interval."""

    __tablename__ = "check_run_marks"
    kind: Mapped[str] = mapped_column(String(20), primary_key=True)
    runs: Mapped[int] = mapped_column(BigInteger)
    last_started_at: Mapped[datetime | None] = mapped_column(UTC_TIME)


# -- kassa's own events (issue 12): what it tells the shop's other systems ---------------

UNDISPATCHED = "dispatched = false"


class Event(Base):
    """One state change kassa reports (`order.paid`, `refund.succeeded`, ...), written in
    the transaction of the change (`services/events.py`), with the resource as the API
    returned it then. `dispatched` turns true once the dispatcher has handed the event to
    every consumer (outgoing webhook deliveries, e-mails) in one transaction with their
    rows, so each consumer sees each event exactly once (`services/dispatch.py`).

    Not the provider's events (`provider_events`): those come in, these go out."""

    __tablename__ = "events"
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    type: Mapped[str] = mapped_column(String(40))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTC_TIME)
    dispatched: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    # The order the event is about, if any (an order's, its payment's, refund's, invoice's
    # or credit note's event): the dashboard's order page lists them (migration 0017).
    order_id: Mapped[str | None] = mapped_column(String(40))
    __table_args__ = (
        # what the dispatcher scans: the few events not yet handed on, oldest first
        Index(
            "ix_events_undispatched",
            "pk",
            postgresql_where=text(UNDISPATCHED),
            sqlite_where=text(UNDISPATCHED),
        ),
        Index("ix_events_created_at", "created_at"),  # pruning, oldest first
        *list_indexes("events", "type", "order_id"),
    )


# -- revenue KPIs (migration 0011) -------------------------------------------------------
# Each KPI reads the rows whose time of one event falls in a window of days
# (services/kpis.py): these make that a range scan of the rows it counts. On PostgreSQL
# the sums' columns ride along (INCLUDE), so a year's sales are read from the index alone,
# and an index leaves out the rows that never had the event.
KPI_INDEXES = (
    Index(
        "ix_orders_paid_at",
        Order.paid_at,
        postgresql_where=Order.paid_at.is_not(None),
        postgresql_include=["currency", "total"],
    ),
    Index(
        "ix_orders_canceled_at", Order.canceled_at, postgresql_where=Order.canceled_at.is_not(None)
    ),
    Index(
        "ix_refunds_succeeded_at",
        Refund.succeeded_at,
        postgresql_where=Refund.succeeded_at.is_not(None),
        postgresql_include=["currency", "amount", "status"],
    ),
    Index("ix_customers_created_at", Customer.created_at),
    Index(
        "ix_wallet_entries_created_at",
        WalletEntry.created_at,
        postgresql_include=["currency", "amount"],
    ),
)


# -- outgoing webhooks (issue 12, migration 0014) ----------------------------------------

PENDING_DELIVERY = "state = 'pending'"


class WebhookEndpoint(Base):
    """A receiver of kassa's events (`services/webhook_endpoints.py`). While a secret is
    rotated, `previous_secret` still signs until `previous_secret_until`."""

    __tablename__ = "webhook_endpoints"
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str | None] = mapped_column(String(500))
    events: Mapped[list[str]] = mapped_column(JSON)
    secret: Mapped[str] = mapped_column(String(100))
    previous_secret: Mapped[str | None] = mapped_column(String(100))
    previous_secret_until: Mapped[datetime | None] = mapped_column(UTC_TIME)
    disabled: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    disabled_reason: Mapped[str | None] = mapped_column(String(500))
    failing_since: Mapped[datetime | None] = mapped_column(UTC_TIME)
    created_at: Mapped[datetime] = mapped_column(UTC_TIME)
    updated_at: Mapped[datetime] = mapped_column(UTC_TIME)


class WebhookDelivery(Base):
    """One event to one endpoint, exactly one row per pair (the unique constraint).

    `event_pk` has no foreign key on purpose: events may be pruned; the delivery keeps the
    event's id and type, and a delivery whose event is gone fails saying so. Pending rows
    are due at `next_attempt_at`; a sender owns one until `lease_until`."""

    __tablename__ = "webhook_deliveries"
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    endpoint_pk: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("webhook_endpoints.pk", ondelete="CASCADE")
    )
    event_pk: Mapped[int] = mapped_column(BigInteger)
    event_id: Mapped[str] = mapped_column(String(40))
    event_type: Mapped[str] = mapped_column(String(40))
    state: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTC_TIME)
    lease_until: Mapped[datetime | None] = mapped_column(UTC_TIME)
    locked_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTC_TIME)
    finished_at: Mapped[datetime | None] = mapped_column(UTC_TIME)
    __table_args__ = (
        CheckConstraint("state IN ('pending', 'succeeded', 'failed')", name="state"),
        UniqueConstraint("event_pk", "endpoint_pk"),
        # what the senders scan: the pending deliveries, soonest due first
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            "pk",
            postgresql_where=text(PENDING_DELIVERY),
            sqlite_where=text(PENDING_DELIVERY),
        ),
        Index("ix_webhook_deliveries_endpoint_pk", "endpoint_pk", "pk"),  # an endpoint's log
        # what pruning scans: the ended deliveries, oldest first (0018)
        Index("ix_webhook_deliveries_finished_at", "finished_at"),
        # each endpoint's next due delivery, a seek per endpoint whatever the backlog
        Index(
            "ix_webhook_deliveries_endpoint_due",
            "endpoint_pk",
            "next_attempt_at",
            "pk",
            postgresql_where=text(PENDING_DELIVERY),
            sqlite_where=text(PENDING_DELIVERY),
        ),
    )


class WebhookDeliveryAttempt(Base):
    """One attempt at a delivery: what the endpoint answered, or why it did not."""

    __tablename__ = "webhook_delivery_attempts"
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    delivery_pk: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("webhook_deliveries.pk", ondelete="CASCADE")
    )
    attempt: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))
    response_status: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(500))
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTC_TIME)
    created_at: Mapped[datetime] = mapped_column(UTC_TIME)
    __table_args__ = (
        CheckConstraint("status IN ('succeeded', 'failed')", name="status"),
        UniqueConstraint("delivery_pk", "attempt"),
    )


# -- e-mail to the buyer (migration 0015) ------------------------------------------------

EMAIL_DUE = "status = 'queued'"


class Email(Base):
    """One message to a buyer (`services/emails.py`): an order confirmation, an invoice or
    a refund notice, queued when its event is dispatched and sent by the worker's mail
    sender. (kind, subject_id) is unique: a message exists once however many times its
    event arrives. `message_id` is derived from `id`, the same on every attempt.

    The lease (`lease_owner`, `lease_until`) is a sender's hold on a row while it tries;
    `handed_over_at` is set (and committed) just before the message is handed to the SMTP
    server and cleared with the outcome: a row whose lease ran out with it set belonged to
    a sender that died while the server may have accepted the message, so it is never
    sent again (`services/emails.py`)."""

    __tablename__ = "emails"
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    kind: Mapped[str] = mapped_column(String(30))
    subject_id: Mapped[str] = mapped_column(String(40))
    order_id: Mapped[str] = mapped_column(String(40))
    recipient: Mapped[str] = mapped_column(String(320))  # `to` is a reserved word in SQL
    subject: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTC_TIME)
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None] = mapped_column(UTC_TIME)
    handed_over_at: Mapped[datetime | None] = mapped_column(UTC_TIME)
    last_error: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTC_TIME)
    sent_at: Mapped[datetime | None] = mapped_column(UTC_TIME)
    __table_args__ = (
        CheckConstraint("status IN ('queued', 'sent', 'failed')", name="status"),
        CheckConstraint("kind IN ('order_confirmation', 'invoice', 'refund_notice')", name="kind"),
        UniqueConstraint("kind", "subject_id", name="uq_emails_kind_subject"),
        # what the sender's claim scans: the queued rows only, soonest due first
        Index(
            "ix_emails_due",
            "next_attempt_at",
            "pk",
            postgresql_where=text(EMAIL_DUE),
            sqlite_where=text(EMAIL_DUE),
        ),
        *list_indexes("emails", "order_id"),
        Index("ix_emails_created_at", "created_at"),  # what pruning scans, oldest first (0018)
    )


# -- staff users and their dashboard sessions (migration 0016) ------------------------------


class StaffUser(Base):
    """A person who signs in to the dashboard (`services/staff_users.py`). Only an Argon2id
    hash of the password is kept; `must_change_password` holds until the user sets their
    own (a new user, or one whose password an admin reset). `email` is stored lower-cased,
    so the unique constraint holds however it is typed."""

    __tablename__ = "staff_users"
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    password_hash: Mapped[str] = mapped_column(String(200))
    must_change_password: Mapped[bool] = mapped_column(Boolean)
    disabled: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UTC_TIME)
    password_changed_at: Mapped[datetime | None] = mapped_column(UTC_TIME)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTC_TIME)
    __table_args__ = (CheckConstraint("role IN ('admin', 'ops', 'analyst')", name="role"),)


class StaffSessionRecord(Base):
    """One signed-in browser (`services/staff_sessions.py`): found by the SHA-256 of the
    cookie's token, which is never stored itself. Revoked (sign-out, a password change, the
    user disabled) rows stay until pruned; a session also ends when idle too long or too
    old, judged from `last_seen_at` and `created_at`."""

    __tablename__ = "staff_sessions"
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_pk: Mapped[int] = mapped_column(BigInteger, ForeignKey("staff_users.pk"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTC_TIME)
    last_seen_at: Mapped[datetime] = mapped_column(UTC_TIME)
    revoked_at: Mapped[datetime | None] = mapped_column(UTC_TIME)


class StaffFormSubmission(Base):
    """One create form of the dashboard, sent (`services/staff_forms.py`): the form carries a
    random token made when its page was rendered; the first post with it claims this row
    and creates, and a second post of the same form (a reload re-posting it, a double
    click) finds the row and is told what the first made instead of making another. Kept
    as long as its session (deleted with it)."""

    __tablename__ = "staff_form_submissions"
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("staff_sessions.id", ondelete="CASCADE")
    )
    token: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTC_TIME)
    __table_args__ = (UniqueConstraint("session_id", "token"),)


class StaffSignInFailure(Base):
    """One failed sign-in, counted by e-mail and by client address to throttle password
    guessing across every API process; deleted for an e-mail when it signs in, and pruned
    once older than the throttle's window."""

    __tablename__ = "staff_sign_in_failures"
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(320))
    client: Mapped[str] = mapped_column(String(100))
    at: Mapped[datetime] = mapped_column(UTC_TIME)
    __table_args__ = (
        Index("ix_staff_sign_in_failures_email_at", "email", "at"),
        Index("ix_staff_sign_in_failures_client_at", "client", "at"),
        Index("ix_staff_sign_in_failures_at", "at"),
    )
