"""The sandbox's own records (what a payment company would keep), in kassa's database.

They live on kassa's `Base` metadata, so the one set of migrations creates them; anything
that needs the complete schema (Alembic's env.py, the test TRUNCATE) imports this module.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from kassa.storage.tables import PK, UTC_TIME, Base


class MockIntent(Base):
    __tablename__ = "mock_intents"
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(60), unique=True)
    reference: Mapped[str] = mapped_column(String(60), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(30))
    payment_method: Mapped[str | None] = mapped_column(String(200))
    client_secret: Mapped[str] = mapped_column(String(120))
    last_error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSON, default=dict)
    # created with a fault script (`MockFaultScript`): only then does a call about this
    # intent look for one, so the usual payment's calls skip that read
    scripted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTC_TIME)


class MockCharge(Base):
    __tablename__ = "mock_charges"
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(60), unique=True)
    intent_id: Mapped[str] = mapped_column(ForeignKey("mock_intents.id"), index=True)
    reference: Mapped[str] = mapped_column(String(60), index=True)
    order_ref: Mapped[str | None] = mapped_column(String(60), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    amount_refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTC_TIME)
    __table_args__ = (CheckConstraint("amount_refunded <= amount", name="refund_within_charge"),)


class MockRefund(Base):
    __tablename__ = "mock_refunds"
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(60), unique=True)
    charge_id: Mapped[str] = mapped_column(ForeignKey("mock_charges.id"), index=True)
    intent_id: Mapped[str] = mapped_column(String(60))
    order_ref: Mapped[str | None] = mapped_column(String(60), index=True)
    reference: Mapped[str] = mapped_column(String(60))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTC_TIME)


class MockIdempotency(Base):
    """The mock's idempotency store: key -> the object the first request produced."""

    __tablename__ = "mock_idempotency"
    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    operation: Mapped[str] = mapped_column(String(20))
    object_id: Mapped[str | None] = mapped_column(String(60))
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTC_TIME)


class MockFaultScript(Base):
    """Faults scripted for the calls about one kassa payment, consumed one per call."""

    __tablename__ = "mock_fault_scripts"
    reference: Mapped[str] = mapped_column(String(60), primary_key=True)
    faults: Mapped[list[str]] = mapped_column(JSON)
    calls_made: Mapped[int] = mapped_column(Integer, default=0)


class MockRequest(Base):
    """The mock's request log (as Stripe's dashboard shows one): every call, its
    idempotency key and the fault it met, whether or not it took effect."""

    __tablename__ = "mock_requests"
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    reference: Mapped[str] = mapped_column(String(60), index=True)
    operation: Mapped[str] = mapped_column(String(30))
    idempotency_key: Mapped[str | None] = mapped_column(String(300))
    fault: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTC_TIME)
