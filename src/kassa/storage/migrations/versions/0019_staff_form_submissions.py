"""staff_form_submissions: a dashboard create form is sent once (issue 13's weak point)

Creating an API key, a staff user or a webhook endpoint answers the form's POST with the
secret itself (shown once, never stored in clear), so a reload re-posted the form and
created a second one. Each such form now carries a random token; the first post claims
(session, token) here, a second one is told what the first made. Rows go with their
session (ON DELETE CASCADE): sessions are pruned once too old.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "staff_form_submissions",
        sa.Column("pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("session_id", sa.String(40), nullable=False),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("resource_id", sa.String(40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["staff_sessions.id"],
            name="fk_staff_form_submissions_session_id_staff_sessions",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pk", name="pk_staff_form_submissions"),
        sa.UniqueConstraint("session_id", "token", name="uq_staff_form_submissions_session_id"),
    )


def downgrade() -> None:
    op.drop_table("staff_form_submissions")
