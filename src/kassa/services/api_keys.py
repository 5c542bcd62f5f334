"""API keys: created with a role, stored only as a SHA-256 hash of the secret.

Secrets are 256 random bits, so a fast hash is enough (nothing to brute-force); the
stored hash is compared in constant time.

Every API request authenticates, so a process keeps the keys it has seen in memory
(`KeyCache`) instead of asking the database each time. A revoke must still take effect at
once everywhere: on PostgreSQL the revoking transaction NOTIFYs every process
(`kassa.storage.notify`), which drops the key the moment the revoke commits (the time it
takes a notification to cross a local socket); an entry is also never older than
`CACHE_MAX_AGE_S`. Where no such signal
arrives (SQLite, or while the listening connection is down) an entry lives only
`UNSIGNALLED_MAX_AGE_S`, which bounds how long a key revoked by another process (`kassa
keys revoke`) may still be served.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from kassa.domain.errors import invalid, not_found
from kassa.domain.ids import new_id
from kassa.domain.roles import Role
from kassa.services import audit
from kassa.services.context import Clock, RequestContext
from kassa.storage.database import Database
from kassa.storage.notify import Listener, notify
from kassa.storage.tables import ApiKey

SECRET_PREFIX = "kassa_sk_"
REVOKED_CHANNEL = "kassa_api_key_revoked"
CACHE_MAX_AGE_S = 60.0
UNSIGNALLED_MAX_AGE_S = 2.0
CACHE_MAX_ENTRIES = 10_000


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


class KeyCache:
    """Keys by secret hash, each with the monotonic time it was read from the database.

    `generation` counts invalidations: a lookup notes it before reading the database and
    `put` keeps the answer only if nothing was invalidated meanwhile, so a revoke that
    lands between the read and the `put` is never papered over by a stale entry."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[ApiKeyView, float]] = {}
        self._lock = threading.Lock()
        self.generation = 0

    def get(self, digest: str, max_age_s: float) -> ApiKeyView | None:
        entry = self._entries.get(digest)
        if entry is None or time.monotonic() - entry[1] > max_age_s:
            return None
        return entry[0]

    def put(self, digest: str, key: ApiKeyView, generation: int) -> None:
        with self._lock:
            if generation != self.generation:
                return
            if len(self._entries) >= CACHE_MAX_ENTRIES:
                self._entries.clear()
            self._entries[digest] = (key, time.monotonic())

    def drop(self, digest: str) -> None:
        with self._lock:
            self.generation += 1
            self._entries.pop(digest, None)

    def clear(self) -> None:
        with self._lock:
            self.generation += 1
            self._entries.clear()


class ApiKeys:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock
        self._cache = KeyCache()
        self._listener: Listener | None = None
        self._listener_lock = threading.Lock()

    def _max_age_s(self) -> float:
        listener = self._listener
        return CACHE_MAX_AGE_S if listener is not None and listener.live else UNSIGNALLED_MAX_AGE_S

    def _listen(self) -> None:
        """Start listening for revokes (PostgreSQL), once, on the first authentication:
        only processes that serve requests need it."""
        if self._listener is not None or self._db.is_sqlite:
            return
        with self._listener_lock:
            if self._listener is None:
                listener = Listener(
                    self._db.url, REVOKED_CHANNEL, self._cache.drop, self._cache.clear
                )
                listener.start()
                self._listener = listener

    def close(self) -> None:
        if self._listener is not None:
            self._listener.stop()

    def cached(self, secret: str) -> ApiKeyView | None:
        """The key for `secret` if this process has it fresh in memory, else None (then
        call `authenticate`). Cheap enough to run on the event loop."""
        return self._cache.get(hash_secret(secret), self._max_age_s())

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
        self._listen()
        known = self._cache.get(digest, self._max_age_s())
        if known is not None:
            return known
        generation = self._cache.generation
        with self._db.transaction(read_only=True) as session:
            row = session.scalar(select(ApiKey).where(ApiKey.secret_hash == digest))
            if row is None or not hmac.compare_digest(row.secret_hash, digest):
                return None
            if row.revoked_at is not None:
                return None
            key = ApiKeyView.of(row)
        self._cache.put(digest, key, generation)
        return key

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
                notify(session, REVOKED_CHANNEL, row.secret_hash)  # delivered on commit
            view = ApiKeyView.of(row)
            digest = row.secret_hash
        self._cache.drop(digest)
        return view
