"""audit_log.subject_id: 100 characters, as long as a provider event id may be

A provider event that kassa refuses (it names another provider's payment) is audited
with the event's id as its subject. Event ids are accepted up to 100 characters (the
decoder's MAX_ID_LENGTH and provider_events.event_id), the subject held 60: on
PostgreSQL the refusal of an event with a longer id failed, and its apply job retried
until it died, the refusal never recorded (found by a test while issue 10 moved the
event's applied mark into the commit's statement).

On PostgreSQL widening a varchar is a change of the catalogue only (no table rewrite).
SQLite does not enforce VARCHAR lengths, but its declared type is what the models are
checked against: there the table is rebuilt (Alembic's batch mode), and its append-only
triggers, which a rebuild drops, are made again.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def _subject_length(length: int, was: int) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column(
            "audit_log", "subject_id", type_=sa.String(length), existing_type=sa.String(was)
        )
        return
    for verb in ("update", "delete"):
        op.execute(f"DROP TRIGGER IF EXISTS audit_log_no_{verb}")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.alter_column(
            "subject_id",
            type_=sa.String(length),
            existing_type=sa.String(was),
            existing_nullable=False,
        )
    for verb in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
            "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
        )


def upgrade() -> None:
    _subject_length(100, was=60)


def downgrade() -> None:
    _subject_length(60, was=100)
