"""Staff users (`services/staff_users.py`): created with a staff role and a one-time
password, listed, disabled, their password reset; each change audited with the actor,
never the password."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from kassa.bootstrap import Kassa
from kassa.domain.errors import DomainError, ErrorKind
from kassa.domain.ids import has_prefix
from kassa.domain.roles import Role
from kassa.services.context import RequestContext
from kassa.services.staff_sessions import SignInRefused
from kassa.storage.tables import AuditRecord, StaffUser, WalletEntry
from tests.conftest import Keys

CLIENT = "203.0.113.7"


def audit_rows(kassa: Kassa, subject: str) -> list[AuditRecord]:
    with kassa.db.transaction(read_only=True) as s:
        stmt = select(AuditRecord).where(AuditRecord.subject_id == subject)
        return list(s.scalars(stmt.order_by(AuditRecord.pk)))


def test_create_stores_a_lower_cased_email_and_only_a_hash(
    kassa: Kassa, system: RequestContext
) -> None:
    user, password = kassa.staff_users.create(system, "  Ada@Example.COM ", "ops")
    assert has_prefix(user.id, "usr"), user.id
    assert user.email == "ada@example.com" and user.role is Role.OPS
    assert user.must_change_password and not user.disabled and user.last_sign_in_at is None
    assert len(password.replace("-", "")) == 16, password
    with kassa.db.transaction(read_only=True) as s:
        row = s.scalar(select(StaffUser).where(StaffUser.id == user.id))
        assert row is not None
        assert row.password_hash.startswith("$argon2id$"), row.password_hash
        assert password not in row.password_hash
    assert kassa.staff_users.get(system, user.id) == user
    assert kassa.staff_users.get(system, "ADA@example.com") == user
    assert [u.id for u in kassa.staff_users.list(system)] == [user.id]


def test_one_time_passwords_differ(kassa: Kassa, system: RequestContext) -> None:
    _, first = kassa.staff_users.create(system, "a@example.com", Role.ANALYST)
    _, second = kassa.staff_users.create(system, "b@example.com", Role.ANALYST)
    assert first != second


@pytest.mark.parametrize("role", ["storefront", "superuser", ""])
def test_create_refuses_a_role_that_is_not_staff(
    kassa: Kassa, system: RequestContext, role: str
) -> None:
    with pytest.raises(DomainError) as refused:
        kassa.staff_users.create(system, "a@example.com", role)
    assert refused.value.code == "invalid_role" and refused.value.kind is ErrorKind.INVALID
    assert kassa.staff_users.list(system) == []


@pytest.mark.parametrize("email", ["not-an-email", "a@", "", "a b@example.com"])
def test_create_refuses_a_bad_email(kassa: Kassa, system: RequestContext, email: str) -> None:
    with pytest.raises(DomainError) as refused:
        kassa.staff_users.create(system, email, "ops")
    assert refused.value.code == "invalid_email"


def test_create_refuses_an_email_in_use_whatever_its_case(
    kassa: Kassa, system: RequestContext
) -> None:
    kassa.staff_users.create(system, "ada@example.com", "ops")
    with pytest.raises(DomainError) as refused:
        kassa.staff_users.create(system, "ADA@example.com", "admin")
    assert refused.value.code == "email_taken" and refused.value.kind is ErrorKind.CONFLICT
    assert len(kassa.staff_users.list(system)) == 1


def test_unknown_user_is_not_found(kassa: Kassa, system: RequestContext) -> None:
    users = kassa.staff_users
    for call in (users.get, users.disable, users.reset_password):
        with pytest.raises(DomainError) as missing:
            call(system, "usr_0000")
        assert missing.value.kind is ErrorKind.NOT_FOUND, call


def test_disable_ends_sessions_and_sign_in(kassa: Kassa, system: RequestContext) -> None:
    user, password = kassa.staff_users.create(system, "ada@example.com", "ops")
    token, _ = kassa.staff_sessions.sign_in("ada@example.com", password, CLIENT)
    assert kassa.staff_sessions.resolve(token) is not None
    disabled = kassa.staff_users.disable(system, "ada@example.com")
    assert disabled.disabled
    assert kassa.staff_sessions.resolve(token) is None
    with pytest.raises(SignInRefused):
        kassa.staff_sessions.sign_in("ada@example.com", password, CLIENT)
    kassa.staff_users.disable(system, user.id)  # again: no change, no second record
    actions = [r.action for r in audit_rows(kassa, user.id)]
    assert actions.count("staff_user.disable") == 1, actions


def test_reset_password_forces_a_change_and_ends_sessions(
    kassa: Kassa, system: RequestContext
) -> None:
    user, first = kassa.staff_users.create(system, "ada@example.com", "ops")
    token, _ = kassa.staff_sessions.sign_in("ada@example.com", first, CLIENT)
    token, _ = kassa.staff_sessions.change_password(token, first, "a long new password")
    assert not kassa.staff_users.get(system, user.id).must_change_password

    second = kassa.staff_users.reset_password(system, user.id)
    assert second != first
    assert kassa.staff_sessions.resolve(token) is None
    assert kassa.staff_users.get(system, user.id).must_change_password
    with pytest.raises(SignInRefused):
        kassa.staff_sessions.sign_in("ada@example.com", "a long new password", CLIENT)
    _, session = kassa.staff_sessions.sign_in("ada@example.com", second, CLIENT)
    assert session.must_change_password


def test_changes_are_audited_with_the_actor_and_never_the_password(
    kassa: Kassa, system: RequestContext
) -> None:
    admin, _ = kassa.staff_users.create(system, "boss@example.com", "admin")
    acting = RequestContext.staff(admin.id, admin.role, "req_1")
    user, first = kassa.staff_users.create(acting, "ada@example.com", "analyst")
    second = kassa.staff_users.reset_password(acting, user.id)
    kassa.staff_users.disable(acting, user.id)
    rows = audit_rows(kassa, user.id)
    assert [r.action for r in rows] == [
        "staff_user.create",
        "staff_user.reset_password",
        "staff_user.disable",
    ]
    hashes = []
    with kassa.db.transaction(read_only=True) as s:
        hashes.append(s.scalar(select(StaffUser.password_hash).where(StaffUser.id == user.id)))
    for row in rows:
        assert row.actor_key_id == "dashboard" and row.actor_user == admin.id, row.action
        assert row.request_id == "req_1"
        dumped = json.dumps([row.before, row.after])
        for secret in (first, second, *hashes, "$argon2"):
            assert str(secret) not in dumped, (row.action, dumped)
    assert rows[0].after == {"email": "ada@example.com", "role": "analyst"}
    # the system's own records name no user
    created_admin = audit_rows(kassa, admin.id)[0]
    assert created_admin.actor_key_id == "test" and created_admin.actor_user is None


def test_audit_api_shows_and_filters_by_actor_user(
    kassa: Kassa, client: TestClient, keys: Keys, system: RequestContext
) -> None:
    admin, _ = kassa.staff_users.create(system, "boss@example.com", "admin")
    acting = RequestContext.staff(admin.id, admin.role)
    user, _ = kassa.staff_users.create(acting, "ada@example.com", "ops")
    kassa.staff_users.create(system, "bob@example.com", "ops")  # not by the admin

    everything = client.get("/v1/audit", headers=keys.headers("admin"))
    assert everything.status_code == 200, everything.text
    assert all("actor_user" in r for r in everything.json()["data"]), everything.text
    assert any(r["actor_user"] is None for r in everything.json()["data"])

    mine = client.get("/v1/audit", params={"actor_user": admin.id}, headers=keys.headers("admin"))
    assert mine.status_code == 200, mine.text
    data = mine.json()["data"]
    assert [(r["action"], r["subject_id"]) for r in data] == [("staff_user.create", user.id)]
    assert data[0]["actor_user"] == admin.id and data[0]["actor_key_id"] == "dashboard"

    nobody = client.get(
        "/v1/audit", params={"actor_user": "usr_nobody"}, headers=keys.headers("admin")
    )
    assert nobody.status_code == 200 and nobody.json()["data"] == [], nobody.text


def test_a_staff_users_wallet_adjustment_names_them_in_audit_and_ledger(
    kassa: Kassa, system: RequestContext
) -> None:
    """What a user does through the services (as the dashboard will) carries their id
    beside the actor key `dashboard`: in the audit log and in the wallet's ledger."""
    admin, _ = kassa.staff_users.create(system, "boss@example.com", "admin")
    customer = kassa.customers.create(system, "c@example.com", None)
    kassa.wallets.adjust(
        RequestContext.staff(admin.id, admin.role), customer.id, "EUR", 500, "goodwill"
    )
    with kassa.db.transaction(read_only=True) as s:
        entry = s.scalar(select(WalletEntry).where(WalletEntry.customer_id == customer.id))
        audited = s.scalar(select(AuditRecord).where(AuditRecord.action == "wallet.adjusted"))
    assert entry is not None and audited is not None
    assert (entry.actor_key_id, entry.actor_user) == ("dashboard", admin.id)
    assert (audited.actor_key_id, audited.actor_user) == ("dashboard", admin.id)
