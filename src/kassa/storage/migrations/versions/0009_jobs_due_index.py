"""a partial index for the worker's claim: the live queue only (issue 10)

Every job's row is updated three times (queued -> running -> done), and no update of its
`state` can be HOT, so each one leaves a dead entry in every index of `jobs` until VACUUM
reaches it. The claim used to find due jobs through `ix_jobs_claimable (state,
run_after)` with a bitmap scan, which visits those dead entries on every poll and (unlike
a plain index scan) never marks them dead: on a busy shop, a few thousand payments after
a VACUUM, a poll that found nothing cost about 4 ms of database CPU, and the cost of a
payment grew with the table.

`ix_jobs_due (run_after, pk) WHERE state IN ('queued', 'running')` holds the live queue
only and gives the claim its rows in order, so PostgreSQL reads it as a plain range scan
that stops at the batch size and marks the entries it finds dead as it goes.
`ix_jobs_claimable` stays: pruning (done jobs by age) and listings by state use it.

Small and quick on both databases (it indexes the queued and running jobs only); plain
CREATE INDEX, in the migration's transaction.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_WHERE = "state IN ('queued', 'running')"


def upgrade() -> None:
    op.create_index(
        "ix_jobs_due",
        "jobs",
        ["run_after", "pk"],
        postgresql_where=sa.text(_WHERE),
        sqlite_where=sa.text(_WHERE),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_due", table_name="jobs")
