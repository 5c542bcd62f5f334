"""Staff users: the people who sign in to the dashboard, each with one staff role.

An admin (or the CLI) creates a user and hands them the one-time password kassa
returns; the user must set their own at their first sign-in (`staff_sessions`). Disabling
a user or resetting their password ends every session they have at once. Users are never
deleted: the audit log names them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kassa.domain.errors import conflict, invalid, not_found
from kassa.domain.ids import has_prefix, new_id
from kassa.domain.roles import Role
from kassa.services import audit
from kassa.services.context import Clock, RequestContext
from kassa.services.passwords import hash_password, one_time_password
from kassa.storage.database import Database
from kassa.storage.tables import StaffSessionRecord, StaffUser

STAFF_ROLES = (Role.ADMIN, Role.OPS, Role.ANALYST)


@dataclass(frozen=True, slots=True)
class StaffUserView:
    id: str
    email: str
    role: Role
    disabled: bool
    must_change_password: bool
    created_at: datetime
    last_sign_in_at: datetime | None

    @classmethod
    def of(cls, row: StaffUser) -> StaffUserView:
        return cls(
            id=row.id,
            email=row.email,
            role=Role(row.role),
            disabled=row.disabled,
            must_change_password=row.must_change_password,
            created_at=row.created_at,
            last_sign_in_at=row.last_sign_in_at,
        )


def normalize_email(email: str) -> str:
    """How an e-mail is stored and looked up: trimmed and lower-cased."""
    return email.strip().lower()


def staff_role(role: Role | str) -> Role:
    """A staff user's role: admin, ops or analyst (a storefront is a program, not a person)."""
    allowed = ", ".join(r.value for r in STAFF_ROLES)
    try:
        parsed = Role(role)
    except ValueError:
        raise invalid("invalid_role", f"role must be one of {allowed}") from None
    if parsed not in STAFF_ROLES:
        raise invalid("invalid_role", f"a staff user's role must be one of {allowed}")
    return parsed


def _valid_email(email: str) -> str:
    try:
        checked = validate_email(email.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        detail = f"{email.strip()!r} is not an e-mail address: {exc}"
        raise invalid("invalid_email", detail) from None
    return normalize_email(checked.normalized)


def revoke_sessions(session: Session, user_pk: int, at: datetime) -> None:
    """End every open session of the user (in the caller's transaction)."""
    session.execute(
        update(StaffSessionRecord)
        .where(StaffSessionRecord.user_pk == user_pk, StaffSessionRecord.revoked_at.is_(None))
        .values(revoked_at=at)
    )


def find_user(session: Session, email_or_id: str, *, lock: bool = False) -> StaffUser:
    """The user with this id (`usr_…`) or e-mail; 404 staff_user_not_found if none."""
    column = StaffUser.id if has_prefix(email_or_id, "usr") else StaffUser.email
    key = email_or_id if column is StaffUser.id else normalize_email(email_or_id)
    stmt = select(StaffUser).where(column == key)
    row = session.scalar(stmt.with_for_update() if lock else stmt)
    if row is None:
        raise not_found("staff_user_not_found", f"no staff user {email_or_id!r}")
    return row


class StaffUsers:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def create(
        self, ctx: RequestContext, email: str, role: Role | str
    ) -> tuple[StaffUserView, str]:
        """Create a user who must change the returned one-time password at first sign-in;
        the password is returned once and only its hash is stored."""
        parsed = staff_role(role)
        address = _valid_email(email)
        password = one_time_password()
        now = self._clock()
        row = StaffUser(
            id=new_id("usr"),
            email=address,
            role=parsed.value,
            password_hash=hash_password(password),
            must_change_password=True,
            disabled=False,
            created_at=now,
        )
        taken = conflict("email_taken", f"a staff user with e-mail {address!r} exists")
        try:
            with self._db.transaction() as session:
                if session.scalar(select(StaffUser.pk).where(StaffUser.email == address)):
                    raise taken
                session.add(row)
                session.flush()
                audit.record(
                    session,
                    ctx,
                    at=now,
                    action="staff_user.create",
                    subject=row.id,
                    after={"email": address, "role": parsed.value},
                )
        except IntegrityError as exc:  # a concurrent create of the same e-mail won
            raise taken from exc
        return StaffUserView.of(row), password

    def list(self, ctx: RequestContext) -> list[StaffUserView]:
        """Every user, oldest first."""
        with self._db.transaction(read_only=True) as session:
            rows = session.scalars(select(StaffUser).order_by(StaffUser.pk))
            return [StaffUserView.of(row) for row in rows]

    def get(self, ctx: RequestContext, user_id: str) -> StaffUserView:
        """One user, by id (`usr_…`) or e-mail."""
        with self._db.transaction(read_only=True) as session:
            return StaffUserView.of(find_user(session, user_id))

    def disable(self, ctx: RequestContext, user_id: str) -> StaffUserView:
        """Disable a user (by id or e-mail): they can no longer sign in, and every session
        they have ends now. Disabling a disabled user changes nothing."""
        now = self._clock()
        with self._db.transaction() as session:
            row = find_user(session, user_id, lock=True)
            if not row.disabled:
                row.disabled = True
                revoke_sessions(session, row.pk, now)
                audit.record(
                    session,
                    ctx,
                    at=now,
                    action="staff_user.disable",
                    subject=row.id,
                    before={"disabled": False},
                    after={"disabled": True},
                )
            return StaffUserView.of(row)

    def reset_password(self, ctx: RequestContext, user_id: str) -> str:
        """A new one-time password for the user (by id or e-mail), returned once: they must
        change it at their next sign-in, and every session they have ends now."""
        password = one_time_password()
        password_hash = hash_password(password)  # slow: before the transaction
        now = self._clock()
        with self._db.transaction() as session:
            row = find_user(session, user_id, lock=True)
            row.password_hash = password_hash
            row.must_change_password = True
            row.password_changed_at = now
            revoke_sessions(session, row.pk, now)
            audit.record(session, ctx, at=now, action="staff_user.reset_password", subject=row.id)
        return password
