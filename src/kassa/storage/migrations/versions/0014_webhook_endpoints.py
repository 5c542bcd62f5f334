"""outgoing webhooks: endpoints, one delivery per (event, endpoint), and each attempt

`webhook_endpoints` holds the shop's receivers (`we_…`): URL, the event types they take
(`["*"]` or a list), the signing secret, and during a rotation the previous secret with
the time it stops signing; `disabled` (by an admin, or by kassa after 5 days of failures,
with the reason) and `failing_since` (the first failed attempt since the last success).

`webhook_deliveries` has one row per (event, endpoint), unique on the pair, so the fan-out
is exactly once whatever happens to the batch that wrote it. It copies the event's id and
type and keeps `event_pk` without a foreign key: events may be pruned without touching
deliveries (a delivery whose event is gone fails with that said). Deleting an endpoint
cascades to its deliveries and their attempts. The partial index on due pending
deliveries is what the senders scan.

`webhook_delivery_attempts` is the log: one row per attempt made, with the answer's
status, how long it took, the error, and when the next attempt is due.

Three new, empty tables: quick on both databases.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_PENDING = "state = 'pending'"
_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("pk", _PK, nullable=False),
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("description", sa.String(500), nullable=True),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("secret", sa.String(100), nullable=False),
        sa.Column("previous_secret", sa.String(100), nullable=True),
        sa.Column("previous_secret_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("disabled_reason", sa.String(500), nullable=True),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pk", name="pk_webhook_endpoints"),
        sa.UniqueConstraint("id", name="uq_webhook_endpoints_id"),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("pk", _PK, nullable=False),
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("endpoint_pk", sa.BigInteger(), nullable=False),
        sa.Column("event_pk", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.String(40), nullable=False),
        sa.Column("event_type", sa.String(40), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("locked_by", sa.String(100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('pending', 'succeeded', 'failed')", name="ck_webhook_deliveries_state"
        ),
        sa.ForeignKeyConstraint(
            ["endpoint_pk"],
            ["webhook_endpoints.pk"],
            name="fk_webhook_deliveries_endpoint_pk_webhook_endpoints",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name="pk_webhook_deliveries"),
        sa.UniqueConstraint("id", name="uq_webhook_deliveries_id"),
        sa.UniqueConstraint("event_pk", "endpoint_pk", name="uq_webhook_deliveries_event_pk"),
    )
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at", "pk"],
        postgresql_where=sa.text(_PENDING),
        sqlite_where=sa.text(_PENDING),
    )
    op.create_index(
        "ix_webhook_deliveries_endpoint_pk", "webhook_deliveries", ["endpoint_pk", "pk"]
    )
    op.create_index(
        "ix_webhook_deliveries_endpoint_due",
        "webhook_deliveries",
        ["endpoint_pk", "next_attempt_at", "pk"],
        postgresql_where=sa.text(_PENDING),
        sqlite_where=sa.text(_PENDING),
    )
    op.create_table(
        "webhook_delivery_attempts",
        sa.Column("pk", _PK, nullable=False),
        sa.Column("delivery_pk", sa.BigInteger(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(500), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('succeeded', 'failed')", name="ck_webhook_delivery_attempts_status"
        ),
        sa.ForeignKeyConstraint(
            ["delivery_pk"],
            ["webhook_deliveries.pk"],
            name="fk_webhook_delivery_attempts_delivery_pk_webhook_deliveries",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name="pk_webhook_delivery_attempts"),
        sa.UniqueConstraint(
            "delivery_pk", "attempt", name="uq_webhook_delivery_attempts_delivery_pk"
        ),
    )


def downgrade() -> None:
    op.drop_table("webhook_delivery_attempts")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_endpoints")
