"""check findings: what the reconciliation checks found, kept until it is gone (issue 11)

`check_findings` holds one row per episode of a problem a check found (open until a
complete run of its check no longer finds it, then resolved); at most one open episode
per (check, subject), enforced by a partial unique index, so two runs storing at once
can never open the same finding twice. `check_run_marks` counts the runs: its `stored`
row is the lock that makes runs store one after the other, its `periodic` row what the
workers claim to run the checks once per `KASSA_CHECK_INTERVAL_S`.

Two new, empty tables: quick on both databases.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_OPEN = "status = 'open'"


def upgrade() -> None:
    op.create_table(
        "check_findings",
        sa.Column("pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("check_name", sa.String(40), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("scope", sa.String(40), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(40), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.CheckConstraint("status IN ('open', 'resolved')", name="ck_check_findings_status"),
        sa.CheckConstraint(
            "(status = 'open' AND resolved_at IS NULL) OR "
            "(status = 'resolved' AND resolved_at IS NOT NULL)",
            name="ck_check_findings_resolution",
        ),
        sa.PrimaryKeyConstraint("pk", name="pk_check_findings"),
        sa.UniqueConstraint("id", name="uq_check_findings_id"),
    )
    op.create_index(
        "uq_check_findings_open",
        "check_findings",
        ["check_name", "subject"],
        unique=True,
        postgresql_where=sa.text(_OPEN),
        sqlite_where=sa.text(_OPEN),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.create_index("ix_check_findings_status_pk", "check_findings", ["status", "pk"])
        op.create_index("ix_check_findings_check_name_pk", "check_findings", ["check_name", "pk"])
    else:
        op.create_index("ix_check_findings_status", "check_findings", ["status"])
        op.create_index("ix_check_findings_check_name", "check_findings", ["check_name"])
    op.create_table(
        "check_run_marks",
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("runs", sa.BigInteger(), nullable=False),
        sa.Column("last_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("kind", name="pk_check_run_marks"),
    )


def downgrade() -> None:
    op.drop_table("check_run_marks")
    op.drop_table("check_findings")
