"""refund groups, wallet top-ups and the wallet ledger

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "wallet_balances",
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.Column("lifetime_paid", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_wallet_balances_customer_id_customers")
        ),
        sa.PrimaryKeyConstraint("customer_id", "currency", name=op.f("pk_wallet_balances")),
    )
    op.create_table(
        "wallet_entries",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("reference", sa.String(length=60), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("actor_key_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('top_up', 'payment', 'refund', 'adjustment')",
            name=op.f("ck_wallet_entries_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_wallet_entries_customer_id_customers")
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_wallet_entries")),
        sa.UniqueConstraint("id", name=op.f("uq_wallet_entries_id")),
        sa.UniqueConstraint("kind", "reference", name="uq_wallet_entries_kind_reference"),
    )
    with op.batch_alter_table("wallet_entries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_wallet_entries_wallet", ["customer_id", "currency", "pk"], unique=False
        )

    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("top_up_customer_id", sa.String(length=40), nullable=True))
        batch_op.alter_column("order_id", existing_type=sa.VARCHAR(length=40), nullable=True)
        batch_op.create_foreign_key(
            batch_op.f("fk_payments_top_up_customer_id_customers"),
            "customers",
            ["top_up_customer_id"],
            ["id"],
        )
        batch_op.create_check_constraint(
            "pays_order_or_wallet", "(order_id IS NULL) <> (top_up_customer_id IS NULL)"
        )

    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("group_id", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("idempotency_base", sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column("failure", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("created_by_key", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_refunds_group_id"), ["group_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_refunds_group_id"))
        batch_op.drop_column("updated_at")
        batch_op.drop_column("created_by_key")
        batch_op.drop_column("failure")
        batch_op.drop_column("idempotency_base")
        batch_op.drop_column("group_id")

    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_payments_pays_order_or_wallet"), type_="check")
        batch_op.drop_constraint(
            batch_op.f("fk_payments_top_up_customer_id_customers"), type_="foreignkey"
        )
        batch_op.alter_column("order_id", existing_type=sa.VARCHAR(length=40), nullable=False)
        batch_op.drop_column("top_up_customer_id")

    with op.batch_alter_table("wallet_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_wallet_entries_wallet")

    op.drop_table("wallet_entries")
    op.drop_table("wallet_balances")
