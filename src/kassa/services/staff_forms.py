"""A dashboard create form is acted on once, however often it is sent.

Creating an API key, a staff user or a webhook endpoint answers its form's POST with the
new secret itself (it is shown once and stored only hashed, so the answer cannot be a
redirect to a page that shows it later). A reload of that answer, or a double click, sends
the form again; without a guard each sending created another key, with a live secret
nobody kept.

So each such form carries a random token made when its page was rendered, and the first
post with it claims (session, token) in `staff_form_submissions`, in a transaction of its
own, before anything is created: the unique constraint elects one sender, on SQLite and
PostgreSQL alike. A later post with the same token is told what the first made
(`Earlier`), never creating. A first post that was refused (a typing mistake) releases its
claim, so the corrected form, which carries a new token anyway, and a reload of the
refusal both work as expected. Claims go with their session (the foreign key cascades).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, delete, select, update

from kassa.services.context import Clock
from kassa.storage.database import Database
from kassa.storage.tables import StaffFormSubmission
from kassa.storage.upsert import unless_exists_prebuilt

MAX_TOKEN = 64
_COLUMNS = ("session_id", "token", "created_at")


def _claim_of(session_id: str, token: str) -> ColumnElement[bool]:
    """The row of one form's claim: its session's, with its token (the unique key)."""
    return and_(StaffFormSubmission.session_id == session_id, StaffFormSubmission.token == token)


@dataclass(frozen=True, slots=True)
class Earlier:
    """What the first sending of a form made: `resource_id`, or None while it is still
    being handled (a double click) or if it made nothing."""

    resource_id: str | None


class StaffForms:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def claim(self, session_id: str, token: str) -> Earlier | None:
        """None when this is the form's first sending (claimed now: go on and create);
        else what the first sending made."""
        with self._db.transaction() as session:
            statement = unless_exists_prebuilt(
                session, StaffFormSubmission, _COLUMNS, ("session_id", "token")
            )
            claimed = session.execute(
                statement, {"session_id": session_id, "token": token, "created_at": self._clock()}
            ).scalar()
            if claimed is not None:
                return None
            made = session.scalar(
                select(StaffFormSubmission.resource_id).where(_claim_of(session_id, token))
            )
            return Earlier(made)

    def made(self, session_id: str, token: str, resource_id: str) -> None:
        """Record what the form's first sending created."""
        with self._db.transaction() as session:
            session.execute(
                update(StaffFormSubmission)
                .where(_claim_of(session_id, token))
                .values(resource_id=resource_id)
            )

    def release(self, session_id: str, token: str) -> None:
        """The first sending was refused and made nothing: the form may be sent again."""
        with self._db.transaction() as session:
            session.execute(delete(StaffFormSubmission).where(_claim_of(session_id, token)))
