"""kassa's own events: the state changes it reports to the shop (issue 12)

`events` holds one row per reported state change (`order.paid`, `refund.succeeded`, ...),
written in the transaction of the change with the resource as the API returned it then.
`dispatched` is false until the dispatcher has handed the event to its consumers
(outgoing webhook deliveries, e-mails); the partial index keeps that scan to the few
events not yet handed on. `GET /v1/events?type=` pages by (type, pk).

A new, empty table: quick on both databases.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_UNDISPATCHED = "dispatched = false"


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dispatched", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.PrimaryKeyConstraint("pk", name="pk_events"),
        sa.UniqueConstraint("id", name="uq_events_id"),
    )
    op.create_index(
        "ix_events_undispatched",
        "events",
        ["pk"],
        postgresql_where=sa.text(_UNDISPATCHED),
        sqlite_where=sa.text(_UNDISPATCHED),
    )
    op.create_index("ix_events_created_at", "events", ["created_at"])
    if op.get_bind().dialect.name == "postgresql":
        op.create_index("ix_events_type_pk", "events", ["type", "pk"])
    else:
        op.create_index("ix_events_type", "events", ["type"])


def downgrade() -> None:
    op.drop_table("events")
