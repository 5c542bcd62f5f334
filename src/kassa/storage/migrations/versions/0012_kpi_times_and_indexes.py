"""when each refund succeeded, and indexes for the revenue KPIs (issue 11)

Revenue KPIs (`GET /v1/kpis`, services/kpis.py) count each figure on the day of its own
event: an order on the day it was paid, created or canceled, a refund on the day it
*succeeded*, a customer on the day it was created, a wallet's balance from its ledger up
to the window's end. Every one of those times was stored except a refund's success:
`refunds.updated_at` is also written when a refund fails or is retried. So:

- `refunds.succeeded_at`, set by `mark_refund_succeeded` (the one way a refund succeeds).
  Existing succeeded refunds take the time of their `refund.succeeded` audit record (the
  same transaction wrote both), or `updated_at` if there is none, or `created_at`.
- Indexes for the windows, each a range scan over the one time column a KPI reads:
  `orders.paid_at` and `orders.canceled_at` and `refunds.succeeded_at` (partial on
  PostgreSQL: most rows of each never have that event, and NULLs are never asked for),
  `customers.created_at` and `wallet_entries.created_at`. (`orders.created_at` and
  `payments.created_at` already have theirs.) On PostgreSQL the sums' columns ride along
  (INCLUDE), so the sales, refunds and ledger of a window are read from the index alone.

Plain CREATE INDEX inside the migration's transaction, like 0008: writes to these tables
wait until it commits. On a database with 1,000,000 orders (bench/kpis.py seeds it as
bench/scale.py does, with 64,000 refunds and 67,000 wallet entries) the upgrade took 13 s
on a shared 2-core machine. A shop that cannot pause writes that long builds the indexes
beforehand without blocking, which this migration then finds and keeps:

    CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_orders_paid_at
        ON orders (paid_at) INCLUDE (currency, total) WHERE paid_at IS NOT NULL;
    CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_orders_canceled_at
        ON orders (canceled_at) WHERE canceled_at IS NOT NULL;
    CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_customers_created_at ON customers (created_at);
    CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_wallet_entries_created_at
        ON wallet_entries (created_at) INCLUDE (currency, amount);

(`ix_refunds_succeeded_at` is on the new column, so it is built here; refunds are few.)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# (index, table, column, partial on PostgreSQL, the columns it carries on PostgreSQL)
_INDEXES = [
    ("ix_orders_paid_at", "orders", "paid_at", True, ["currency", "total"]),
    ("ix_orders_canceled_at", "orders", "canceled_at", True, []),
    ("ix_refunds_succeeded_at", "refunds", "succeeded_at", True, ["currency", "amount", "status"]),
    ("ix_customers_created_at", "customers", "created_at", False, []),
    ("ix_wallet_entries_created_at", "wallet_entries", "created_at", False, ["currency", "amount"]),
]


def upgrade() -> None:
    with op.batch_alter_table("refunds") as batch:
        batch.add_column(sa.Column("succeeded_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE refunds SET succeeded_at = COALESCE("
        " (SELECT min(a.created_at) FROM audit_log a"
        "  WHERE a.subject_id = refunds.id AND a.action = 'refund.succeeded'),"
        " updated_at, created_at)"
        " WHERE status = 'succeeded'"
    )
    for name, table, column, partial, carried in _INDEXES:
        where = sa.text(f"{column} IS NOT NULL") if partial else None
        op.create_index(
            name,
            table,
            [column],
            postgresql_where=where,
            postgresql_include=carried,
            if_not_exists=True,
        )


def downgrade() -> None:
    for name, table, *_rest in _INDEXES:
        op.drop_index(name, table_name=table)
    with op.batch_alter_table("refunds") as batch:
        batch.drop_column("succeeded_at")
