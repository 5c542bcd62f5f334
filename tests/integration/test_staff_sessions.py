"""Dashboard sessions (`services/staff_sessions.py`): sign-in, the forced password change,
throttling, idle and absolute timeouts, sign-out; tokens stored only hashed."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import func, select

from kassa.bootstrap import Kassa
from kassa.config import Settings
from kassa.domain.ids import has_prefix
from kassa.domain.roles import Role
from kassa.services.context import RequestContext
from kassa.services.staff_sessions import (
    FAILURE_WINDOW_S,
    SESSION_COOKIE,
    PasswordRejected,
    SessionEnded,
    SignInRefused,
    SignInThrottled,
)
from kassa.storage.tables import AuditRecord, StaffSessionRecord, StaffSignInFailure, StaffUser
from tests.conftest import FakeClock

CLIENT = "203.0.113.7"
NEW_PASSWORD = "correct horse battery"


@pytest.fixture
def ada(kassa: Kassa, system: RequestContext) -> tuple[str, str]:
    """A new ops user: (id, one-time password)."""
    user, password = kassa.staff_users.create(system, "ada@example.com", "ops")
    return user.id, password


def session_rows(kassa: Kassa) -> list[StaffSessionRecord]:
    with kassa.db.transaction(read_only=True) as s:
        return list(s.scalars(select(StaffSessionRecord).order_by(StaffSessionRecord.pk)))


def actions_by(kassa: Kassa, user_id: str) -> list[tuple[str, str, str | None]]:
    with kassa.db.transaction(read_only=True) as s:
        rows = s.execute(
            select(AuditRecord.action, AuditRecord.actor_key_id, AuditRecord.actor_user)
            .where(AuditRecord.subject_id == user_id)
            .order_by(AuditRecord.pk)
        ).all()
    return [(a, k, u) for a, k, u in rows]


def test_sign_in_forced_change_and_rotation(kassa: Kassa, ada: tuple[str, str]) -> None:
    user_id, one_time = ada
    assert SESSION_COOKIE == "kassa_session"
    token, session = kassa.staff_sessions.sign_in("ADA@example.com ", one_time, CLIENT)
    assert has_prefix(session.id, "ses") and session.user.id == user_id
    assert session.must_change_password and session.user.role is Role.OPS
    assert len(token) >= 43 and session.csrf_token
    ctx = session.context("req_9")
    assert (ctx.actor_key_id, ctx.actor_user, ctx.role, ctx.request_id) == (
        "dashboard",
        user_id,
        Role.OPS,
        "req_9",
    )
    resolved = kassa.staff_sessions.resolve(token)
    assert resolved == session

    # a second browser signed in with the same password ends when the password changes
    other_token, _ = kassa.staff_sessions.sign_in("ada@example.com", one_time, CLIENT)
    new_token, changed = kassa.staff_sessions.change_password(token, one_time, NEW_PASSWORD)
    assert new_token != token and changed.id == session.id
    assert changed.csrf_token != session.csrf_token
    assert not changed.must_change_password
    assert kassa.staff_sessions.resolve(token) is None  # the old token is gone
    assert kassa.staff_sessions.resolve(other_token) is None  # the other session ended
    assert kassa.staff_sessions.resolve(new_token) == changed

    with pytest.raises(SignInRefused):
        kassa.staff_sessions.sign_in("ada@example.com", one_time, CLIENT)
    _, again = kassa.staff_sessions.sign_in("ada@example.com", NEW_PASSWORD, CLIENT)
    assert not again.must_change_password
    assert kassa.staff_users.get(RequestContext.system(), user_id).last_sign_in_at is not None

    assert actions_by(kassa, user_id) == [
        ("staff_user.create", "test", None),
        ("staff_session.sign_in", "dashboard", user_id),
        ("staff_session.sign_in", "dashboard", user_id),
        ("staff_user.change_password", "dashboard", user_id),
        ("staff_session.sign_in", "dashboard", user_id),
    ]


@pytest.mark.parametrize(
    ("current", "new", "why"),
    [
        ("wrong", NEW_PASSWORD, "current password is wrong"),
        (None, "short", "at least 12"),
        (None, None, "differ"),
    ],
)
def test_change_password_policy(
    kassa: Kassa, ada: tuple[str, str], current: str | None, new: str | None, why: str
) -> None:
    _, one_time = ada
    token, session = kassa.staff_sessions.sign_in("ada@example.com", one_time, CLIENT)
    with pytest.raises(PasswordRejected) as rejected:
        kassa.staff_sessions.change_password(token, current or one_time, new or one_time)
    assert why in rejected.value.detail
    assert kassa.staff_sessions.resolve(token) == session  # still signed in, still forced


def test_change_password_needs_a_live_session(kassa: Kassa, ada: tuple[str, str]) -> None:
    _, one_time = ada
    with pytest.raises(SessionEnded):
        kassa.staff_sessions.change_password("no-such-token", one_time, NEW_PASSWORD)


def test_wrong_password_and_unknown_email_get_the_same_answer(
    kassa: Kassa, ada: tuple[str, str], system: RequestContext
) -> None:
    _, one_time = ada
    kassa.staff_users.create(system, "gone@example.com", "ops")
    kassa.staff_users.disable(system, "gone@example.com")
    answers = []
    for email, password in [
        ("ada@example.com", "not the password"),
        ("nobody@example.com", one_time),
        ("gone@example.com", "anything"),
    ]:
        with pytest.raises(SignInRefused) as refused:
            kassa.staff_sessions.sign_in(email, password, CLIENT)
        answers.append((refused.value.code, refused.value.detail, refused.value.kind))
    assert answers == [("sign_in_refused", "email or password is wrong", answers[0][2])] * 3
    assert session_rows(kassa) == []


def test_throttled_after_five_failures_per_email_until_the_window_passes(
    kassa: Kassa, ada: tuple[str, str], clock: FakeClock
) -> None:
    _, one_time = ada
    for _ in range(5):
        with pytest.raises(SignInRefused):
            kassa.staff_sessions.sign_in("ada@example.com", "guess", CLIENT)
        clock.advance(10)
    # now even the right password is not checked
    with pytest.raises(SignInThrottled) as throttled:
        kassa.staff_sessions.sign_in("ada@example.com", one_time, "198.51.100.1")
    assert 0 < throttled.value.retry_after_s <= FAILURE_WINDOW_S
    assert throttled.value.retry_after_s == pytest.approx(FAILURE_WINDOW_S - 50, abs=2)
    # per e-mail: another user (and an unknown address) from the same client still may try
    with pytest.raises(SignInRefused):
        kassa.staff_sessions.sign_in("nobody@example.com", "guess", CLIENT)

    clock.advance(throttled.value.retry_after_s)  # the oldest failure leaves the window
    token, _ = kassa.staff_sessions.sign_in("ada@example.com", one_time, CLIENT)
    assert kassa.staff_sessions.resolve(token) is not None
    with kassa.db.transaction(read_only=True) as s:  # a success forgets the e-mail's failures
        emails = set(s.scalars(select(StaffSignInFailure.email)))
    assert emails == {"nobody@example.com"}


def test_throttle_lifts_after_fifteen_minutes(
    kassa: Kassa, ada: tuple[str, str], clock: FakeClock
) -> None:
    _, one_time = ada
    for _ in range(5):
        with pytest.raises(SignInRefused):
            kassa.staff_sessions.sign_in("ada@example.com", "guess", CLIENT)
    with pytest.raises(SignInThrottled):
        kassa.staff_sessions.sign_in("ada@example.com", one_time, CLIENT)
    clock.advance(FAILURE_WINDOW_S - 5)
    with pytest.raises(SignInThrottled):
        kassa.staff_sessions.sign_in("ada@example.com", one_time, CLIENT)
    clock.advance(10)
    kassa.staff_sessions.sign_in("ada@example.com", one_time, CLIENT)


def test_throttled_per_client_after_thirty_failures(
    kassa: Kassa, ada: tuple[str, str], clock: FakeClock
) -> None:
    _, one_time = ada
    for n in range(30):  # many e-mails, few guesses each: the client is what repeats
        with pytest.raises(SignInRefused):
            kassa.staff_sessions.sign_in(f"user{n}@example.com", "guess", CLIENT)
    with pytest.raises(SignInThrottled):
        kassa.staff_sessions.sign_in("ada@example.com", one_time, CLIENT)
    kassa.staff_sessions.sign_in("ada@example.com", one_time, "198.51.100.1")


def test_old_failures_are_pruned(kassa: Kassa, ada: tuple[str, str], clock: FakeClock) -> None:
    for _ in range(3):
        with pytest.raises(SignInRefused):
            kassa.staff_sessions.sign_in("x@example.com", "guess", CLIENT)
    clock.advance(FAILURE_WINDOW_S + 1)
    with pytest.raises(SignInRefused):
        kassa.staff_sessions.sign_in("y@example.com", "guess", CLIENT)
    with kassa.db.transaction(read_only=True) as s:
        assert list(s.scalars(select(StaffSignInFailure.email))) == ["y@example.com"]


def test_idle_timeout(kassa: Kassa, ada: tuple[str, str], clock: FakeClock) -> None:
    _, one_time = ada
    token, _ = kassa.staff_sessions.sign_in("ada@example.com", one_time, CLIENT)
    for _ in range(3):  # used every 25 minutes: never idle for 30
        clock.advance(25 * 60)
        assert kassa.staff_sessions.resolve(token) is not None
    clock.advance(30 * 60 + 1)
    assert kassa.staff_sessions.resolve(token) is None


def test_last_seen_is_written_at_most_once_a_minute(
    kassa: Kassa, ada: tuple[str, str], clock: FakeClock
) -> None:
    _, one_time = ada
    token, _ = kassa.staff_sessions.sign_in("ada@example.com", one_time, CLIENT)
    signed_in_at = clock()
    clock.advance(30)
    kassa.staff_sessions.resolve(token)
    assert session_rows(kassa)[0].last_seen_at == signed_in_at
    clock.advance(31)
    kassa.staff_sessions.resolve(token)
    assert session_rows(kassa)[0].last_seen_at == clock()


def test_max_age_ends_a_busy_session(kassa: Kassa, ada: tuple[str, str], clock: FakeClock) -> None:
    _, one_time = ada
    token, _ = kassa.staff_sessions.sign_in("ada@example.com", one_time, CLIENT)
    for _ in range(12 * 6):  # a view every 10 minutes for 12 hours
        clock.advance(600)
        assert kassa.staff_sessions.resolve(token) is not None
    clock.advance(1)
    assert kassa.staff_sessions.resolve(token) is None


def test_disabled_users_session_no_longer_resolves(
    kassa: Kassa, ada: tuple[str, str], system: RequestContext
) -> None:
    user_id, one_time = ada
    token, _ = kassa.staff_sessions.sign_in("ada@example.com", one_time, CLIENT)
    with kassa.db.transaction() as s:  # even without the revoke that `disable` also does
        row = s.scalar(select(StaffUser).where(StaffUser.id == user_id))
        assert row is not None
        row.disabled = True
    assert kassa.staff_sessions.resolve(token) is None


def test_sign_out_revokes(kassa: Kassa, ada: tuple[str, str]) -> None:
    user_id, one_time = ada
    token, _ = kassa.staff_sessions.sign_in("ada@example.com", one_time, CLIENT)
    other, _ = kassa.staff_sessions.sign_in("ada@example.com", one_time, CLIENT)
    kassa.staff_sessions.sign_out(token)
    assert kassa.staff_sessions.resolve(token) is None
    assert kassa.staff_sessions.resolve(other) is not None  # only that browser
    kassa.staff_sessions.sign_out(token)  # again: nothing more happens
    kassa.staff_sessions.sign_out("unknown")
    assert [a for a in actions_by(kassa, user_id) if a[0] == "staff_session.sign_out"] == [
        ("staff_session.sign_out", "dashboard", user_id)
    ]
    with pytest.raises(SessionEnded):
        kassa.staff_sessions.change_password(token, one_time, NEW_PASSWORD)


def test_tokens_are_stored_only_hashed(kassa: Kassa, ada: tuple[str, str]) -> None:
    _, one_time = ada
    token, _ = kassa.staff_sessions.sign_in("ada@example.com", one_time, CLIENT)
    rotated, _ = kassa.staff_sessions.change_password(token, one_time, NEW_PASSWORD)
    (row,) = session_rows(kassa)
    assert row.token_hash == hashlib.sha256(rotated.encode()).hexdigest()
    with kassa.db.transaction(read_only=True) as s:
        for table in (StaffSessionRecord, StaffUser, AuditRecord):
            for raw in (token, rotated):
                dump = repr([tuple(r) for r in s.execute(select(table.__table__)).all()])
                assert raw not in dump, table.__tablename__
        for raw in (one_time, NEW_PASSWORD):
            dump = repr([tuple(r) for r in s.execute(select(AuditRecord.__table__)).all()])
            assert raw not in dump
        assert s.scalar(select(func.count()).select_from(StaffSessionRecord)) == 1


def test_timeouts_come_from_the_settings(
    database_url: str, clock: FakeClock, system: RequestContext
) -> None:
    settings = Settings(
        database_url=database_url, dashboard_idle_timeout_s=60, dashboard_session_max_s=150
    )
    core = Kassa(settings, clock=clock)
    try:
        _, password = core.staff_users.create(system, "ada@example.com", "analyst")
        token, _ = core.staff_sessions.sign_in("ada@example.com", password, CLIENT)
        clock.advance(61)
        assert core.staff_sessions.resolve(token) is None  # idle
        token, _ = core.staff_sessions.sign_in("ada@example.com", password, CLIENT)
        for _ in range(3):
            clock.advance(50)
            assert core.staff_sessions.resolve(token) is not None
        clock.advance(1)
        assert core.staff_sessions.resolve(token) is None  # too old
    finally:
        core.close()
