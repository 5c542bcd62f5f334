"""e-mail to the buyer: one row per message, queued from events and sent by the worker (issue 12)

`emails` holds each order confirmation, invoice and refund notice kassa sends a buyer:
queued when the dispatcher hands its event on, then claimed under a lease by the
worker's mail sender, sent, and marked `sent` or `failed`. (kind, subject_id) is unique,
so a message exists once however often its event arrives. `ix_emails_due` (the queued
rows only) is what the sender's claim scans; `GET /v1/emails?order=` pages by
(order_id, pk).

A new, empty table: quick on both databases.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_DUE = "status = 'queued'"


def upgrade() -> None:
    op.create_table(
        "emails",
        sa.Column("pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("subject_id", sa.String(40), nullable=False),
        sa.Column("order_id", sa.String(40), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(100), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("handed_over_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("message_id", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('queued', 'sent', 'failed')", name="ck_emails_status"),
        sa.CheckConstraint(
            "kind IN ('order_confirmation', 'invoice', 'refund_notice')", name="ck_emails_kind"
        ),
        sa.PrimaryKeyConstraint("pk", name="pk_emails"),
        sa.UniqueConstraint("id", name="uq_emails_id"),
        sa.UniqueConstraint("kind", "subject_id", name="uq_emails_kind_subject"),
    )
    op.create_index(
        "ix_emails_due",
        "emails",
        ["next_attempt_at", "pk"],
        postgresql_where=sa.text(_DUE),
        sqlite_where=sa.text(_DUE),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.create_index("ix_emails_order_id_pk", "emails", ["order_id", "pk"])
    else:
        op.create_index("ix_emails_order_id", "emails", ["order_id"])


def downgrade() -> None:
    op.drop_table("emails")
