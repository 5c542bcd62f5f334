"""Dashboard sessions: sign-in with e-mail and password, the session behind the cookie,
password changes and sign-out.

The cookie carries a random token (256 bits); the database keeps only its SHA-256, so a
leaked table opens no session. A session ends when revoked (sign-out, the user disabled,
their password changed or reset), when idle longer than `idle_timeout_s`, or when older
than `max_age_s` however busy.

Password guessing is throttled in the database, so that every API process counts the
same failures: once `MAX_FAILURES_PER_EMAIL` failures for one e-mail, or
`MAX_FAILURES_PER_CLIENT` from one client, lie within `FAILURE_WINDOW_S`, further
attempts are refused (`SignInThrottled`) without checking the password. The count is read before the
(slow) hash is verified, so attempts racing in parallel may each pass it: a few more
guesses at most, never an unbounded number.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from kassa.domain.errors import DomainError, ErrorKind
from kassa.domain.ids import new_id
from kassa.domain.roles import Role
from kassa.services import audit
from kassa.services.context import Clock, RequestContext
from kassa.services.passwords import dummy_hash, hash_password, needs_rehash, verify_password
from kassa.services.staff_users import StaffUserView, normalize_email
from kassa.storage.database import Database
from kassa.storage.tables import StaffSessionRecord, StaffSignInFailure, StaffUser

SESSION_COOKIE = "kassa_session"

FAILURE_WINDOW_S = 15 * 60
MAX_FAILURES_PER_EMAIL = 5
MAX_FAILURES_PER_CLIENT = 30
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # hashing is slow by design: no megabyte passwords
LAST_SEEN_EVERY_S = 60  # how stale `last_seen_at` may grow before a request writes it
CHANGE_PASSWORD_CLIENT = "change-password"  # a failed current password, as a "client"


class SignInRefused(DomainError):
    """Unknown e-mail, wrong password or disabled user: one answer for all three, so that
    it tells nobody which e-mails have accounts."""

    def __init__(self) -> None:
        super().__init__("sign_in_refused", "email or password is wrong", ErrorKind.REJECTED)


class SignInThrottled(DomainError):
    """Too many failed sign-ins lately; `retry_after_s` until the next attempt is heard."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            "sign_in_throttled",
            f"too many failed sign-ins: try again in {retry_after_s} s",
            ErrorKind.CONFLICT,
        )
        self.retry_after_s = retry_after_s


class PasswordRejected(DomainError):
    """A new password that breaks the policy, or a wrong current password."""

    def __init__(self, detail: str) -> None:
        super().__init__("password_rejected", detail, ErrorKind.INVALID)


class SessionEnded(DomainError):
    """The session is unknown, revoked or expired: sign in again."""

    def __init__(self) -> None:
        super().__init__(
            "session_ended", "the session has ended: sign in again", ErrorKind.REJECTED
        )


@dataclass(frozen=True, slots=True)
class StaffSession:
    id: str
    user: StaffUserView
    csrf_token: str

    @property
    def must_change_password(self) -> bool:
        return self.user.must_change_password

    def context(self, request_id: str | None = None) -> RequestContext:
        """Who acts when this session does something: the user, with their role."""
        return RequestContext.staff(self.user.id, self.user.role, request_id)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_token() -> tuple[str, str]:
    """A cookie token and its hash."""
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


class StaffSessions:
    def __init__(self, db: Database, clock: Clock, *, idle_timeout_s: int, max_age_s: int) -> None:
        self._db = db
        self._clock = clock
        self._idle = timedelta(seconds=idle_timeout_s)
        self._max_age = timedelta(seconds=max_age_s)
        # how stale `last_seen_at` may grow: a session in use must never look idle, so
        # well below the idle timeout however short that is set
        self._seen_every = timedelta(seconds=min(LAST_SEEN_EVERY_S, idle_timeout_s / 4))

    # -- throttling --------------------------------------------------------------------

    def _retry_after(
        self,
        session: Session,
        column: InstrumentedAttribute[str],
        key: str,
        limit: int,
        now: datetime,
    ) -> int | None:
        """Seconds until fewer than `limit` failures for `key` remain in the window, or
        None if there are fewer already."""
        since = now - timedelta(seconds=FAILURE_WINDOW_S)
        recent = select(StaffSignInFailure.at).where(column == key, StaffSignInFailure.at > since)
        count = session.scalar(select(func.count()).select_from(recent.subquery())) or 0
        if count < limit:
            return None
        # the failure whose expiry brings the count below the limit
        expiring = session.scalar(
            recent.order_by(StaffSignInFailure.at).offset(count - limit).limit(1)
        )
        assert expiring is not None
        left = expiring + timedelta(seconds=FAILURE_WINDOW_S) - now
        return max(1, int(left.total_seconds()) + 1)

    def _check_throttle(self, session: Session, email: str, client: str | None) -> None:
        now = self._clock()
        waits = [
            self._retry_after(session, StaffSignInFailure.email, email, MAX_FAILURES_PER_EMAIL, now)
        ]
        if client is not None:
            waits.append(
                self._retry_after(
                    session, StaffSignInFailure.client, client, MAX_FAILURES_PER_CLIENT, now
                )
            )
        longest = max((w for w in waits if w is not None), default=None)
        if longest is not None:
            raise SignInThrottled(longest)

    def _record_failure(self, email: str, client: str) -> None:
        """Count one failure, and prune the ones too old to count any more."""
        now = self._clock()
        with self._db.transaction() as session:
            session.execute(
                delete(StaffSignInFailure).where(
                    StaffSignInFailure.at <= now - timedelta(seconds=FAILURE_WINDOW_S)
                )
            )
            session.add(StaffSignInFailure(email=email[:320], client=client[:100], at=now))

    # -- sign-in -----------------------------------------------------------------------

    def sign_in(self, email: str, password: str, client: str) -> tuple[str, StaffSession]:
        """Sign in: the raw token for the cookie (returned once, stored only hashed) and the
        new session. SignInRefused for any wrong e-mail, password or disabled user;
        SignInThrottled after too many failures."""
        address = normalize_email(email)
        client = client[:100]
        with self._db.transaction(read_only=True) as session:
            self._check_throttle(session, address, client)
            user = session.execute(
                select(StaffUser.pk, StaffUser.password_hash, StaffUser.disabled).where(
                    StaffUser.email == address
                )
            ).first()
        # verified outside any transaction (it takes tens of milliseconds on purpose), and
        # for an unknown e-mail too, against a dummy hash, so that it takes as long
        stored = user.password_hash if user is not None else dummy_hash()
        matches = verify_password(stored, password)
        if user is None or user.disabled or not matches:
            self._record_failure(address, client)
            raise SignInRefused()
        rehashed = hash_password(password) if needs_rehash(stored) else None
        token, digest = _new_token()
        now = self._clock()
        with self._db.transaction() as session:
            row = session.scalar(select(StaffUser).where(StaffUser.pk == user.pk))
            if row is None or row.disabled or row.password_hash != stored:
                raise SignInRefused()  # disabled or reset meanwhile
            session.execute(delete(StaffSignInFailure).where(StaffSignInFailure.email == address))
            ended = StaffSessionRecord.created_at < now - self._max_age  # too old to resolve
            session.execute(delete(StaffSessionRecord).where(ended))
            if rehashed is not None:
                row.password_hash = rehashed
            row.last_sign_in_at = now
            record = StaffSessionRecord(
                id=new_id("ses"),
                token_hash=digest,
                user_pk=row.pk,
                csrf_token=secrets.token_urlsafe(32),
                created_at=now,
                last_seen_at=now,
            )
            session.add(record)
            view = _audited(session, row, "staff_session.sign_in", record.id, now)
        return token, StaffSession(record.id, view, record.csrf_token)

    # -- the session behind a cookie -----------------------------------------------------

    def _live(self, session: Session, token: str) -> tuple[StaffSessionRecord, StaffUser] | None:
        found = session.execute(
            select(StaffSessionRecord, StaffUser)
            .join(StaffUser, StaffUser.pk == StaffSessionRecord.user_pk)
            .where(StaffSessionRecord.token_hash == hash_token(token))
        ).first()
        if found is None:
            return None
        record, user = found
        now = self._clock()
        if (
            record.revoked_at is not None
            or user.disabled
            or now - record.last_seen_at > self._idle
            or now - record.created_at > self._max_age
        ):
            return None
        return record, user

    def resolve(self, token: str) -> StaffSession | None:
        """The live session for a cookie's token, or None (unknown, revoked, idle too long,
        too old, or its user disabled). Marks it seen at most once a minute (a quarter of the
        idle timeout if that is shorter), so most page views cost one read, and a session
        may end up to that much before the idle timeout has fully passed."""
        if not token:
            return None
        with self._db.transaction(read_only=True) as session:
            live = self._live(session, token)
            if live is None:
                return None
            record, user = live
            result = StaffSession(record.id, StaffUserView.of(user), record.csrf_token)
            last_seen = record.last_seen_at
        now = self._clock()
        if now - last_seen >= self._seen_every:
            with self._db.transaction() as session:
                session.execute(
                    update(StaffSessionRecord)
                    .where(StaffSessionRecord.id == result.id)
                    .values(last_seen_at=now)
                )
        return result

    def change_password(
        self, token: str, current_password: str | None, new_password: str
    ) -> tuple[str, StaffSession]:
        """Set the user's own password: `current_password` must be right and the new one
        must follow the policy (`PasswordRejected`); that the new one was typed twice alike
        is the caller's check. Every other session of the user ends and this one gets a
        new token and CSRF token (returned: set the cookie again).

        `current_password` may be None only while the user must replace a one-time
        password: this session was opened with it moments ago, so it was just proven (the
        contract's first sign-in asks for the new password twice, nothing else)."""
        with self._db.transaction(read_only=True) as session:
            live = self._live(session, token)
            if live is None:
                raise SessionEnded()
            record, user = live
            stored, address, session_pk = user.password_hash, user.email, record.pk
            forced = user.must_change_password
            self._check_throttle(session, address, None)
        if current_password is None:
            if not forced:
                raise PasswordRejected("the current password is needed to change it")
            if verify_password(stored, new_password):
                raise PasswordRejected("the new password must differ from the one-time one")
        elif not verify_password(stored, current_password):
            self._record_failure(address, CHANGE_PASSWORD_CLIENT)
            raise PasswordRejected("the current password is wrong")
        _check_policy(current_password or "", new_password)
        new_hash = hash_password(new_password)
        new_token, digest = _new_token()
        now = self._clock()
        with self._db.transaction() as session:
            current = session.scalar(
                select(StaffSessionRecord).where(StaffSessionRecord.pk == session_pk)
            )
            row = session.scalar(select(StaffUser).where(StaffUser.email == address))
            if current is None or row is None or current.revoked_at is not None or row.disabled:
                raise SessionEnded()
            if row.password_hash != stored:
                raise PasswordRejected("the password was changed meanwhile: sign in again")
            row.password_hash = new_hash
            row.must_change_password = False
            row.password_changed_at = now
            session.execute(
                update(StaffSessionRecord)
                .where(
                    StaffSessionRecord.user_pk == row.pk,
                    StaffSessionRecord.pk != session_pk,
                    StaffSessionRecord.revoked_at.is_(None),
                )
                .values(revoked_at=now)
            )
            current.token_hash = digest
            current.csrf_token = secrets.token_urlsafe(32)
            current.last_seen_at = now
            view = _audited(session, row, "staff_user.change_password", current.id, now)
        return new_token, StaffSession(current.id, view, current.csrf_token)

    def sign_out(self, token: str) -> None:
        """End the session behind `token` (nothing happens if it has ended already)."""
        if not token:
            return
        now = self._clock()
        with self._db.transaction() as session:
            found = session.execute(
                select(StaffSessionRecord, StaffUser)
                .join(StaffUser, StaffUser.pk == StaffSessionRecord.user_pk)
                .where(StaffSessionRecord.token_hash == hash_token(token))
            ).first()
            if found is None:
                return
            record, user = found
            if record.revoked_at is not None:
                return
            record.revoked_at = now
            audit.record(
                session,
                RequestContext.staff(user.id, Role(user.role)),
                at=now,
                action="staff_session.sign_out",
                subject=user.id,
                after={"session": record.id},
            )


def _check_policy(current_password: str, new_password: str) -> None:
    if len(new_password) < MIN_PASSWORD_LENGTH:
        raise PasswordRejected(
            f"the new password must have at least {MIN_PASSWORD_LENGTH} characters"
        )
    if len(new_password) > MAX_PASSWORD_LENGTH:
        raise PasswordRejected(
            f"the new password must have at most {MAX_PASSWORD_LENGTH} characters"
        )
    if new_password == current_password:
        raise PasswordRejected("the new password must differ from the current one")


def _audited(
    session: Session, row: StaffUser, action: str, session_id: str, now: datetime
) -> StaffUserView:
    """Audit `action` of the user `row` on their own account, with them as the actor."""
    view = StaffUserView.of(row)
    audit.record(
        session,
        RequestContext.staff(view.id, view.role),
        at=now,
        action=action,
        subject=view.id,
        after={"session": session_id},
    )
    return view
