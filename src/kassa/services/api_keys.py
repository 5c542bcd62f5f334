"""API keys: created with a role, stored only as a SHA-256 hash of the secret.

Secrets are 256 random bits, so a fast hash is enough (nothing to brute-force); the
stored hash is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from kassa.domain.errors import invalid, not_found
from kassa.domain.ids import new_id
from kassa.domain.roles import Role
from kassa.services import audit
from kassa.services.context import Clock, RequestContext
from kassa.storage.database import Database
from kassa.storage.tables import ApiKey

SECRET_PREFIX = "kassa_sk_"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKeyView:
    id: str
    name: str
    role: Role
    secret_prefix: str
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, row: ApiKey) -> ApiKeyView:
        return cls(
            id=row.id,
            name=row.name,
            role=Role(row.role),
            secret_prefix=row.secret_prefix,
            created_at=row.created_at,
            revoked_at=row.revoked_at,
        )


class ApiKeys:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def create(self, ctx: RequestContext, role: str, name: str) -> tuple[ApiKeyView, str]:
        """Create a key; the secret is returned once and never stored."""
        try:
            parsed = Role(role)
        except ValueError:
            allowed = ", ".join(r.value for r in Role)
            raise invalid("invalid_role", f"role must be one of {allowed}") from None
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        now = self._clock()
        row = ApiKey(
            id=new_id("key"),
            name=name.strip() or parsed.value,
            role=parsed.value,
            secret_hash=hash_secret(secret),
            secret_prefix=secret[: len(SECRET_PREFIX) + 4],
            created_at=now,
        )
        with self._db.transaction() as session:
            session.add(row)
            audit.record(
                session,
                ctx,
                at=now,
                action="api_key.created",
                subject=row.id,
                after={"role": row.role, "name": row.name},
            )
        return ApiKeyView.of(row), secret

    def authenticate(self, secret: str) -> ApiKeyView | None:
        digest = hash_secret(secret)
        with self._db.transaction(read_only=True) as session:
            row = session.scalar(select(ApiKey).where(ApiKey.secret_hash == digest))
            if row is None or not hmac.compare_digest(row.secret_hash, digest):
                return None
            if row.revoked_at is not None:
                return None
            return ApiKeyView.of(row)

    def list(self) -> list[ApiKeyView]:
        with self._db.transaction(read_only=True) as session:
            return [ApiKeyView.of(r) for r in session.scalars(select(ApiKey).order_by(ApiKey.pk))]

    def revoke(self, ctx: RequestContext, key_id: str) -> ApiKeyView:
        now = self._clock()
        with self._db.transaction() as session:
            row = session.scalar(select(ApiKey).where(ApiKey.id == key_id).with_for_update())
            if row is None:
                raise not_found("api_key_not_found", f"no API key {key_id!r}")
            if row.revoked_at is None:
                row.revoked_at = now
                audit.record(session, ctx, at=now, action="api_key.revoked", subject=row.id)
            return ApiKeyView.of(row)
