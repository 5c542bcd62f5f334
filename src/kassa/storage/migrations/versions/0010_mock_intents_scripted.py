"""the sandbox's intents say whether their payment has a fault script (issue 10)

Every sandbox call looked its payment's fault script up (`SELECT ... FOR UPDATE` on
`mock_fault_scripts`), though almost no payment has one: only a payment method written
with `|faults` makes a script, and it does so at the intent's creation. The intent now
records that (`scripted`), so a call about an intent made without a script skips the
read: one statement fewer per confirm, refund or cancel of a usual sandbox payment.

Existing intents whose payment has a script are marked; the others get `false`.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("mock_intents") as batch:
        batch.add_column(
            sa.Column("scripted", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.execute(
        "UPDATE mock_intents SET scripted = true"
        " WHERE reference IN (SELECT reference FROM mock_fault_scripts)"
    )


def downgrade() -> None:
    with op.batch_alter_table("mock_intents") as batch:
        batch.drop_column("scripted")
