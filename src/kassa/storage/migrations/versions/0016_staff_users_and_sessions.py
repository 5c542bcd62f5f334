"""staff users, their dashboard sessions and failed sign-ins; audit_log.actor_user (issue 13)

`staff_users` holds the people who sign in to the dashboard (`usr_…`): e-mail (stored
lower-cased, unique), role, an Argon2id hash of the password, whether they must change
it at their next sign-in, whether they are disabled, and when they last signed in.

`staff_sessions` has one row per signed-in browser (`ses_…`), found by the SHA-256 of the
cookie's token (the token itself is never stored), with its CSRF token, when it was
created and last seen, and when it was revoked.

`staff_sign_in_failures` has one row per failed sign-in, counted by e-mail and by client
address within a window to throttle password guessing in every process alike.

`audit_log.actor_user` names the staff user who acted through the dashboard (their
records have `actor_key_id` "dashboard"). A nullable column added in place
(`ADD COLUMN`, no table rebuild, so the triggers that refuse UPDATE and DELETE stay), and
its list index as `tables.list_indexes` makes them: (actor_user, pk) on PostgreSQL,
(actor_user) on SQLite. Every existing row has it NULL, so the index builds quickly.
`wallet_entries.actor_user` likewise names the user beside the entry's `actor_key_id`.

Three new, empty tables and two nullable columns: quick on both databases.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    op.create_table(
        "staff_users",
        sa.Column("pk", _PK, nullable=False),
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("must_change_password", sa.Boolean(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("password_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_sign_in_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("role IN ('admin', 'ops', 'analyst')", name="ck_staff_users_role"),
        sa.PrimaryKeyConstraint("pk", name="pk_staff_users"),
        sa.UniqueConstraint("id", name="uq_staff_users_id"),
        sa.UniqueConstraint("email", name="uq_staff_users_email"),
    )
    op.create_table(
        "staff_sessions",
        sa.Column("pk", _PK, nullable=False),
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("user_pk", sa.BigInteger(), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_pk"], ["staff_users.pk"], name="fk_staff_sessions_user_pk_staff_users"
        ),
        sa.PrimaryKeyConstraint("pk", name="pk_staff_sessions"),
        sa.UniqueConstraint("id", name="uq_staff_sessions_id"),
        sa.UniqueConstraint("token_hash", name="uq_staff_sessions_token_hash"),
    )
    op.create_index("ix_staff_sessions_user_pk", "staff_sessions", ["user_pk"])
    op.create_table(
        "staff_sign_in_failures",
        sa.Column("pk", _PK, nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("client", sa.String(100), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pk", name="pk_staff_sign_in_failures"),
    )
    for column in ("email", "client"):
        op.create_index(
            f"ix_staff_sign_in_failures_{column}_at", "staff_sign_in_failures", [column, "at"]
        )
    op.create_index("ix_staff_sign_in_failures_at", "staff_sign_in_failures", ["at"])

    op.add_column("audit_log", sa.Column("actor_user", sa.String(40), nullable=True))
    op.add_column("wallet_entries", sa.Column("actor_user", sa.String(40), nullable=True))
    if _postgres():
        op.create_index("ix_audit_log_actor_user_pk", "audit_log", ["actor_user", "pk"])
    else:
        op.create_index("ix_audit_log_actor_user", "audit_log", ["actor_user"])


def downgrade() -> None:
    name = "ix_audit_log_actor_user_pk" if _postgres() else "ix_audit_log_actor_user"
    op.drop_index(name, table_name="audit_log")
    op.drop_column("audit_log", "actor_user")  # in place (SQLite 3.35+): the triggers stay
    op.drop_column("wallet_entries", "actor_user")
    op.drop_table("staff_sign_in_failures")
    op.drop_table("staff_sessions")
    op.drop_table("staff_users")
