"""indexes for every list filter in cursor order, and for pruning (issue 10)

Every list pages newest first on the surrogate key (`ORDER BY pk DESC LIMIT n`, after
`pk < cursor`), so an index on a filter column alone makes PostgreSQL fetch *every*
matching row and sort them for each page: a busy buyer's e-mail, a storefront key's
orders, a status or an audit action match thousands to millions of rows. An index on
(filter, pk) hands out the page in order and starts at the cursor. Each such composite
replaces the single-column index it extends (same lookups, one index less to write on
every insert):

- orders: email, customer_id, status, created_by_key (a storefront key sees only its
  own orders) → (column, pk)
- payments: status → (status, pk)
- audit_log: subject_id, action, actor_key_id → (column, pk)
- documents: kind (invoices and credit notes are listed apart; credit notes are few, so
  without it their list walks every invoice) → (kind, pk), new

All of these on PostgreSQL only. On SQLite an index on a column already is (column,
rowid), so it serves the same pages in order; and naming pk would sway SQLite's planner,
which keeps no statistics, towards these indexes and away from a more selective one (see
`tables.list_indexes`). SQLite keeps its indexes as they were.

Three redundant ones go (on both): order_lines.order_id, payment_attempts.payment_id and
refund_attempts.refund_id each lead a unique constraint ((order_id, position), (…,
number)) that serves the same lookups. Each was one more random leaf page written per
insert: on a big table that page is rarely in memory and, the first time after a
checkpoint, goes whole into the WAL.

One for pruning (services/pruning.py), on both: provider_events.received_at, so that
finding the oldest applied events is a range scan (an event is applied after it arrives).

Plain CREATE INDEX, inside the migration's one transaction (which holds the advisory lock
that keeps two starting processes from migrating at once, so CONCURRENTLY, which cannot
run in a transaction, is not available here): writes to the tables wait until the
migration commits (reads go on until the old indexes are dropped, at the very end). On a
database with 1,000,000 orders (bench/scale.py's) the upgrade took 54 s on a 2-core
machine. A shop that cannot pause writes that long builds the new indexes beforehand
without blocking, which this migration then finds and keeps:

    CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_orders_email_pk ON orders (email, pk);
    CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_orders_customer_id_pk ON orders (customer_id, pk);
    CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_orders_status_pk ON orders (status, pk);
    CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_orders_created_by_key_pk
        ON orders (created_by_key, pk);
    CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_payments_status_pk ON payments (status, pk);
    CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_audit_log_subject_id_pk
        ON audit_log (subject_id, pk);
    CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_audit_log_action_pk ON audit_log (action, pk);
    CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_audit_log_actor_key_id_pk
        ON audit_log (actor_key_id, pk);
    CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_documents_kind_pk ON documents (kind, pk);
    CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_provider_events_received_at
        ON provider_events (received_at);

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-15
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# On PostgreSQL: (table, the single-column index replaced, the new index, its columns)
_REPLACED = [
    ("orders", "ix_orders_email", "ix_orders_email_pk", ["email", "pk"]),
    ("orders", "ix_orders_customer_id", "ix_orders_customer_id_pk", ["customer_id", "pk"]),
    ("orders", "ix_orders_status", "ix_orders_status_pk", ["status", "pk"]),
    (
        "orders",
        "ix_orders_created_by_key",
        "ix_orders_created_by_key_pk",
        ["created_by_key", "pk"],
    ),
    ("payments", "ix_payments_status", "ix_payments_status_pk", ["status", "pk"]),
    ("audit_log", "ix_audit_log_subject_id", "ix_audit_log_subject_id_pk", ["subject_id", "pk"]),
    ("audit_log", "ix_audit_log_action", "ix_audit_log_action_pk", ["action", "pk"]),
    (
        "audit_log",
        "ix_audit_log_actor_key_id",
        "ix_audit_log_actor_key_id_pk",
        ["actor_key_id", "pk"],
    ),
]

# (table, the redundant index, its column)
_REDUNDANT = [
    ("order_lines", "ix_order_lines_order_id", "order_id"),
    ("payment_attempts", "ix_payment_attempts_payment_id", "payment_id"),
    ("refund_attempts", "ix_refund_attempts_refund_id", "refund_id"),
]


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    """Every build first, every drop last: a build lets readers through (it blocks only
    writers), a drop blocks everyone until the migration commits, a moment later."""
    postgres = _postgres()
    if postgres:
        for table, _old, new, columns in _REPLACED:
            op.create_index(op.f(new), table, columns, if_not_exists=True)
        op.create_index(
            op.f("ix_documents_kind_pk"), "documents", ["kind", "pk"], if_not_exists=True
        )
    op.create_index(
        op.f("ix_provider_events_received_at"),
        "provider_events",
        ["received_at"],
        if_not_exists=True,
    )
    if postgres:
        for table, old, _new, _columns in _REPLACED:
            op.drop_index(op.f(old), table_name=table)
    for table, name, _column in _REDUNDANT:
        op.drop_index(op.f(name), table_name=table)


def downgrade() -> None:
    for table, name, column in _REDUNDANT:
        op.create_index(op.f(name), table, [column])
    op.drop_index(op.f("ix_provider_events_received_at"), table_name="provider_events")
    if _postgres():
        op.drop_index(op.f("ix_documents_kind_pk"), table_name="documents")
        for table, old, new, columns in _REPLACED:
            op.create_index(op.f(old), table, [columns[0]])
            op.drop_index(op.f(new), table_name=table)
