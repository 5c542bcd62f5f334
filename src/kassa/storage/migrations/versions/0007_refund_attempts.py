"""refund_attempts: every provider call made for a refund part, recorded as the payment
attempts are (gateway health reads both; payment analytics only the payment attempts)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "refund_attempts",
        sa.Column(
            "pk",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("refund_id", sa.String(length=40), nullable=False),
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
            ["refund_id"], ["refunds.id"], name=op.f("fk_refund_attempts_refund_id_refunds")
        ),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_refund_attempts")),
        sa.UniqueConstraint("refund_id", "number", name="uq_refund_attempts_number"),
    )
    op.create_index(op.f("ix_refund_attempts_refund_id"), "refund_attempts", ["refund_id"])
    op.create_index(
        "ix_refund_attempts_provider_time", "refund_attempts", ["provider", "started_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_refund_attempts_provider_time", table_name="refund_attempts")
    op.drop_index(op.f("ix_refund_attempts_refund_id"), table_name="refund_attempts")
    op.drop_table("refund_attempts")
