"""indexes for the v1.1 lists: customers by e-mail whatever its case, and the
`created[gte]`/`created[lt]` time filters of orders, refunds, invoices and credit notes
(payments.created_at was indexed already)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_customers_email_lower", "customers", [sa.text("lower(email)")])
    op.create_index(op.f("ix_orders_created_at"), "orders", ["created_at"])
    op.create_index(op.f("ix_refunds_created_at"), "refunds", ["created_at"])
    op.create_index(op.f("ix_documents_issued_at"), "documents", ["issued_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_documents_issued_at"), table_name="documents")
    op.drop_index(op.f("ix_refunds_created_at"), table_name="refunds")
    op.drop_index(op.f("ix_orders_created_at"), table_name="orders")
    op.drop_index("ix_customers_email_lower", table_name="customers")
