"""payments, gateway health and the mock provider

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "gateway_states",
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("provider", name=op.f("pk_gateway_states")),
    )
    op.create_table(
        "mock_fault_scripts",
        sa.Column("reference", sa.String(length=60), nullable=False),
        sa.Column("faults", sa.JSON(), nullable=False),
        sa.Column("calls_made", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("reference", name=op.f("pk_mock_fault_scripts")),
    )
    op.create_table(
        "mock_idempotency",
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("operation", sa.String(length=20), nullable=False),
        sa.Column("object_id", sa.String(length=60), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_mock_idempotency")),
    )
    op.create_table(
        "mock_intents",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("id", sa.String(length=60), nullable=False),
        sa.Column("reference", sa.String(length=60), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("payment_method", sa.String(length=200), nullable=True),
        sa.Column("client_secret", sa.String(length=120), nullable=False),
        sa.Column("last_error", sa.JSON(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_mock_intents")),
        sa.UniqueConstraint("id", name=op.f("uq_mock_intents_id")),
    )
    with op.batch_alter_table("mock_intents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mock_intents_reference"), ["reference"], unique=False)

    op.create_table(
        "mock_requests",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("reference", sa.String(length=60), nullable=False),
        sa.Column("operation", sa.String(length=30), nullable=False),
        sa.Column("idempotency_key", sa.String(length=300), nullable=True),
        sa.Column("fault", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_mock_requests")),
    )
    with op.batch_alter_table("mock_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mock_requests_reference"), ["reference"], unique=False)

    op.create_table(
        "mock_charges",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("id", sa.String(length=60), nullable=False),
        sa.Column("intent_id", sa.String(length=60), nullable=False),
        sa.Column("reference", sa.String(length=60), nullable=False),
        sa.Column("order_ref", sa.String(length=60), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("amount_refunded", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "amount_refunded <= amount", name=op.f("ck_mock_charges_refund_within_charge")
        ),
        sa.ForeignKeyConstraint(
            ["intent_id"], ["mock_intents.id"], name=op.f("fk_mock_charges_intent_id_mock_intents")
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_mock_charges")),
        sa.UniqueConstraint("id", name=op.f("uq_mock_charges_id")),
    )
    with op.batch_alter_table("mock_charges", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mock_charges_intent_id"), ["intent_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_mock_charges_order_ref"), ["order_ref"], unique=False)
        batch_op.create_index(batch_op.f("ix_mock_charges_reference"), ["reference"], unique=False)

    op.create_table(
        "mock_refunds",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("id", sa.String(length=60), nullable=False),
        sa.Column("charge_id", sa.String(length=60), nullable=False),
        sa.Column("intent_id", sa.String(length=60), nullable=False),
        sa.Column("order_ref", sa.String(length=60), nullable=True),
        sa.Column("reference", sa.String(length=60), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["charge_id"], ["mock_charges.id"], name=op.f("fk_mock_refunds_charge_id_mock_charges")
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_mock_refunds")),
        sa.UniqueConstraint("id", name=op.f("uq_mock_refunds_id")),
    )
    with op.batch_alter_table("mock_refunds", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mock_refunds_charge_id"), ["charge_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_mock_refunds_order_ref"), ["order_ref"], unique=False)

    op.create_table(
        "payments",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("order_id", sa.String(length=40), nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("provider_payment_id", sa.String(length=100), nullable=True),
        sa.Column("idempotency_base", sa.String(length=300), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("payment_method", sa.String(length=200), nullable=True),
        sa.Column("client_secret", sa.String(length=200), nullable=True),
        sa.Column("next_action", sa.JSON(), nullable=True),
        sa.Column("failure", sa.JSON(), nullable=True),
        sa.Column("retry_count", sa.Integer(), nullable=False),
        sa.Column("recovered_by_retry", sa.Boolean(), nullable=False),
        sa.Column("orchestration_ms", sa.Integer(), nullable=True),
        sa.Column("no_retry_reason", sa.String(length=40), nullable=True),
        sa.Column("created_by_key", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("succeeded_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('processing', 'requires_action', 'succeeded', 'failed', 'canceled')",
            name=op.f("ck_payments_status"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_payments_amount_positive")),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_payments_order_id_orders")
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_payments")),
        sa.UniqueConstraint("id", name=op.f("uq_payments_id")),
        sa.UniqueConstraint("provider", "provider_payment_id", name="uq_payments_provider_intent"),
    )
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_payments_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_payments_order_id"), ["order_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_payments_provider_payment_id"), ["provider_payment_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_payments_status"), ["status"], unique=False)

    op.create_table(
        "payment_attempts",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("payment_id", sa.String(length=40), nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("operation", sa.String(length=20), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("error_type", sa.String(length=40), nullable=True),
        sa.Column("code", sa.String(length=60), nullable=True),
        sa.Column("decline_code", sa.String(length=60), nullable=True),
        sa.Column("retry_delay_ms", sa.Integer(), nullable=True),
        sa.Column("gateway_failure", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_payment_attempts_payment_id_payments")
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_payment_attempts")),
        sa.UniqueConstraint("payment_id", "number", name="uq_payment_attempts_number"),
    )
    with op.batch_alter_table("payment_attempts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_payment_attempts_payment_id"), ["payment_id"], unique=False
        )
        batch_op.create_index(
            "ix_payment_attempts_provider_time", ["provider", "started_at"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("payment_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_payment_attempts_provider_time")
        batch_op.drop_index(batch_op.f("ix_payment_attempts_payment_id"))

    op.drop_table("payment_attempts")
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payments_status"))
        batch_op.drop_index(batch_op.f("ix_payments_provider_payment_id"))
        batch_op.drop_index(batch_op.f("ix_payments_order_id"))
        batch_op.drop_index(batch_op.f("ix_payments_created_at"))

    op.drop_table("payments")
    with op.batch_alter_table("mock_refunds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mock_refunds_order_ref"))
        batch_op.drop_index(batch_op.f("ix_mock_refunds_charge_id"))

    op.drop_table("mock_refunds")
    with op.batch_alter_table("mock_charges", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mock_charges_reference"))
        batch_op.drop_index(batch_op.f("ix_mock_charges_order_ref"))
        batch_op.drop_index(batch_op.f("ix_mock_charges_intent_id"))

    op.drop_table("mock_charges")
    with op.batch_alter_table("mock_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mock_requests_reference"))

    op.drop_table("mock_requests")
    with op.batch_alter_table("mock_intents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mock_intents_reference"))

    op.drop_table("mock_intents")
    op.drop_table("mock_idempotency")
    op.drop_table("mock_fault_scripts")
    op.drop_table("gateway_states")
