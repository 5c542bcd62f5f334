"""Indexes for pruning outgoing webhook deliveries and e-mails (issue 10's tables that only
grow; issue 12 left these two unpruned)

`services/pruning.py` deletes ended deliveries by `finished_at` and sent or failed e-mails
by `created_at`, oldest first and bounded by the cutoff: without an index each batch
would scan the whole table.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_webhook_deliveries_finished_at", "webhook_deliveries", ["finished_at"])
    op.create_index("ix_emails_created_at", "emails", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_emails_created_at", table_name="emails")
    op.drop_index("ix_webhook_deliveries_finished_at", table_name="webhook_deliveries")
