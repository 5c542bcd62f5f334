"""The append-only audit log: one record per state change, written in its transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kassa.domain.ids import new_id
from kassa.services.context import Clock, RequestContext
from kassa.services.pagination import Page, paginate
from kassa.storage.database import Database
from kassa.storage.deferred import defer
from kassa.storage.tables import AuditRecord


@dataclass(frozen=True, slots=True)
class AuditView:
    id: str
    actor_key_id: str
    action: str
    subject_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    request_id: str | None
    created_at: datetime
    actor_user: str | None = None

    @classmethod
    def of(cls, row: AuditRecord) -> AuditView:
        return cls(
            id=row.id,
            actor_key_id=row.actor_key_id,
            action=row.action,
            subject_id=row.subject_id,
            before=row.before,
            after=row.after,
            request_id=row.request_id,
            created_at=row.created_at,
            actor_user=row.actor_user,
        )


def record(
    session: Session,
    ctx: RequestContext,
    *,
    at: datetime,
    action: str,
    subject: str,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """Append one audit record inside the caller's transaction: `ctx` acted on `subject`
    (an id) at `at`; `before` and `after` summarise what changed."""
    # Written at commit, with the transaction's other records in one round trip
    # (`storage.deferred`): an audit record is never read back in the transaction that
    # writes it, and a settled payment writes two.
    defer(
        session,
        AuditRecord,
        {
            "id": new_id("aud"),
            "actor_key_id": ctx.actor_key_id,
            "action": action,
            "subject_id": subject,
            "before": before,
            "after": after,
            "request_id": ctx.request_id,
            "created_at": at,
            "actor_user": ctx.actor_user,
        },
    )


class AuditLog:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def of_subjects(self, subject_ids: Sequence[str], limit: int = 100) -> list[AuditView]:
        """The newest `limit` records about any of `subject_ids` (an order, its payments
        and refunds: the order page's trail), newest first; one read on the subject index."""
        if not subject_ids:
            return []
        stmt = (
            select(AuditRecord)
            .where(AuditRecord.subject_id.in_(list(subject_ids)))
            .order_by(AuditRecord.pk.desc())
            .limit(limit)
        )
        with self._db.transaction(read_only=True) as session:
            return [AuditView.of(row) for row in session.scalars(stmt)]

    def list(
        self,
        *,
        limit: int,
        starting_after: str | None = None,
        subject_id: str | None = None,
        action: str | None = None,
        actor_key_id: str | None = None,
        actor_user: str | None = None,
    ) -> Page[AuditView]:
        stmt = select(AuditRecord)
        if subject_id:
            stmt = stmt.where(AuditRecord.subject_id == subject_id)
        if action:
            stmt = stmt.where(AuditRecord.action == action)
        if actor_key_id:
            stmt = stmt.where(AuditRecord.actor_key_id == actor_key_id)
        if actor_user:
            stmt = stmt.where(AuditRecord.actor_user == actor_user)
        with self._db.transaction(read_only=True) as session:
            page = paginate(session, AuditRecord, stmt, limit, starting_after)
            return page.map(AuditView.of)
