"""events.order_id: the order an event is about, for the dashboard's order page (issue 13)

Written by `services/events.record` from the event's resource (the order, or the order its
payment, refund, invoice or credit note names). Existing events keep NULL: they are
pruned after the retention anyway (`KASSA_OUTGOING_EVENT_RETENTION_S`). The list index is
(order_id, pk) on PostgreSQL and (order_id) on SQLite, as for every list filter (0008).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("events", sa.Column("order_id", sa.String(40), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.create_index("ix_events_order_id_pk", "events", ["order_id", "pk"])
    else:
        op.create_index("ix_events_order_id", "events", ["order_id"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_events_order_id_pk", table_name="events")
    else:
        op.drop_index("ix_events_order_id", table_name="events")
    op.drop_column("events", "order_id")
