"""Durable idempotency keys, scoped to the API key, shared by every process.

The first request with a key inserts an `in_progress` row (a unique constraint makes
exactly one request win, on SQLite and PostgreSQL alike) and runs; its answer is then
stored and replayed byte for byte.

The claim does not take a transaction of its own (`Claim`, a `RequestScope`): the row is
inserted first thing in the request's first write transaction, and the answer is stored
in its last. For a request whose effect is local (no provider call: an order, a product,
a cancel), claim, effect and answer are ONE transaction: they commit together, so a
process that dies half-way leaves nothing behind and the retry simply runs. A request
that calls a provider (a payment, a refund) commits its claim with the effect's first
step; the service links the resource it created to the row in that same transaction
(`attach_resource`), so if the process dies before the answer is stored, a later retry
finds the resource and answers from it instead of doing the work twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.orm import Session

from kassa.services.context import Clock
from kassa.storage.database import Database, RequestScope, table_of
from kassa.storage.deferred import defer_update
from kassa.storage.errors import StorageError
from kassa.storage.tables import IdempotencyKey
from kassa.storage.upsert import unless_exists_prebuilt

log = logging.getLogger("kassa.idempotency")

_KEYS = table_of(IdempotencyKey)  # Core statements on the hot path
MAX_KEY_LENGTH = 255
IN_PROGRESS = "in_progress"
COMPLETED = "completed"


def fingerprint(method: str, path: str, body: bytes) -> str:
    """Hash of what makes two requests "the same": method, path and JSON body.

    A JSON body is canonicalised (key order and white space do not matter); anything
    else is hashed as raw bytes.
    """
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, UnicodeDecodeError):
        canonical = body
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), canonical):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Proceed:
    """This request owns the key: run it, then `complete` or `abandon`."""

    pk: int


@dataclass(frozen=True, slots=True)
class Replay:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Reused:
    """The key was first used with a different request."""


@dataclass(frozen=True, slots=True)
class InUse:
    """The first request with this key is still running."""


@dataclass(frozen=True, slots=True)
class Recover:
    """A request with this key died after its effect committed: answer from the resource."""

    pk: int
    resource_type: str
    resource_id: str


Decision = Proceed | Replay | Reused | InUse | Recover


class Decided(Exception):
    """Raised by a claim that finds an earlier request with the key: the request stops
    (its transaction rolls back) and is answered with `decision` instead."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(type(decision).__name__)
        self.decision = decision


class Claim:
    """One request's claim on its Idempotency-Key, made lazily (see the module docstring).

    `local`: the request's effect needs no provider call, so all of its writes are held in
    one transaction with the claim and the answer."""

    def __init__(
        self,
        store: IdempotencyStore,
        api_key_id: str,
        key: str,
        request_fingerprint: str,
        *,
        local: bool,
    ) -> None:
        self._store = store
        self._api_key_id = api_key_id
        self._key = key
        self._fingerprint = request_fingerprint
        self.pk: int | None = None
        self.scope = RequestScope(on_open=self._open, hold_all=local)
        self.answered = False  # `finish` has stored the request's answer
        # what the request will produce, when it says so before its claim is written
        # (`declare_resource`): the claim's own INSERT then links it
        self.resource: tuple[str, str] | None = None

    @property
    def store(self) -> IdempotencyStore:
        return self._store

    def _open(self, session: Session) -> None:
        decision = self._store.claim_in(
            session, self._api_key_id, self._key, self._fingerprint, resource=self.resource
        )
        if not isinstance(decision, Proceed):
            raise Decided(decision)
        self.pk = decision.pk


# Built once (every keyed request ends with it): see `storage.upsert.unless_exists_prebuilt`.
_WRITE_ANSWER = (
    update(_KEYS)
    .where(_KEYS.c.pk == bindparam("key_pk"))
    .values(
        state=COMPLETED,
        response_status=bindparam("answer_status"),
        response_headers=bindparam("answer_headers", type_=_KEYS.c.response_headers.type),
        response_body=bindparam("answer_body", type_=_KEYS.c.response_body.type),
        completed_at=bindparam("answered_at", type_=_KEYS.c.completed_at.type),
    )
)
_CLAIM: ContextVar[Claim | None] = ContextVar("kassa_idempotency_claim", default=None)
# the claim's INSERT ... ON CONFLICT DO NOTHING, with a bind parameter per column
_CLAIM_COLUMNS = (
    "api_key_id",
    "key",
    "fingerprint",
    "locked_at",
    "created_at",
    "resource_type",
    "resource_id",
)


def current_claim() -> Claim | None:
    """The claim of the request running in this context (threads started from the request
    carry it), if it has an Idempotency-Key."""
    return _CLAIM.get()


def declare_resource(resource_type: str, resource_id: str) -> None:
    """Name the resource the request is about to create (its id drawn beforehand), before
    its first write transaction: the key's claim is then inserted already linked to it,
    and `attach_resource` has nothing left to write (one UPDATE fewer). A no-op without
    an Idempotency-Key, for a local effect, or once the claim is written."""
    claim = _CLAIM.get()
    if claim is None or claim.pk is not None or claim.scope.hold_all:
        return
    claim.resource = (resource_type, resource_id)


def attach_resource(session: Session, resource_type: str, resource_id: str) -> None:
    """Link the resource a request produced to its idempotency row, in the effect's own
    transaction. A no-op for requests without an Idempotency-Key."""
    claim = _CLAIM.get()
    if claim is None or claim.pk is None or claim.scope.hold_all:
        return  # no key; or a local effect, which commits with its answer or not at all
    if claim.resource == (resource_type, resource_id):
        return  # the claim was inserted linked to it (`declare_resource`)
    session.execute(
        update(_KEYS)
        .where(_KEYS.c.pk == claim.pk)
        .values(resource_type=resource_type, resource_id=resource_id)
    )


class IdempotencyStore:
    def __init__(
        self, db: Database, clock: Clock, *, lock_timeout_s: int, retention_s: int
    ) -> None:
        self._db = db
        self._clock = clock
        self._lock_timeout = timedelta(seconds=lock_timeout_s)
        self._retention = timedelta(seconds=retention_s)
        self._deferred = _Deferred(float(lock_timeout_s))

    @contextmanager
    def running(self, claim: Claim) -> Iterator[Claim]:
        """Run the block (and the threads it starts with its context) under `claim`."""
        token = _CLAIM.set(claim)
        try:
            with self._db.scoped(claim.scope):
                yield claim
        finally:
            _CLAIM.reset(token)

    def adopt(self, pk: int) -> Claim:
        """A claim on a row that is already committed (a request that held the key and
        died, as tests and recovery tools replay it)."""
        claim = Claim(self, "", "", "", local=False)
        claim.pk = pk
        claim.scope.opened = claim.scope.claim_committed = True
        return claim

    def has_pending_releases(self) -> bool:
        return self._deferred.pending

    def release_pending(self) -> None:
        """Before a request claims a key: the releases this process could not write while
        the database was away go first (else the retry of such a request would find its
        own key still locked). Cheap when there are none, as there almost never are."""
        self._deferred.run_due()

    def begin(self, api_key_id: str, key: str, request_fingerprint: str) -> Decision:
        """Claim the key in a transaction of its own (what a request holding the key
        looks like to others, for tests and tools; requests use `Claim`)."""
        with self._db.transaction() as session:
            return self.claim_in(session, api_key_id, key, request_fingerprint)

    def claim_in(
        self,
        session: Session,
        api_key_id: str,
        key: str,
        request_fingerprint: str,
        *,
        resource: tuple[str, str] | None = None,
    ) -> Decision:
        """Insert the key's row in `session`'s transaction, or decide from the one there.
        `resource` (type, id): what this request will create, linked from the start."""
        now = self._clock()
        resource_type, resource_id = resource or (None, None)
        values: dict[str, Any] = {
            "api_key_id": api_key_id,
            "key": key,
            "fingerprint": request_fingerprint,
            "locked_at": now,
            "created_at": now,
            "resource_type": resource_type,
            "resource_id": resource_id,
        }
        claim = unless_exists_prebuilt(
            session,
            IdempotencyKey,
            _CLAIM_COLUMNS,
            ("api_key_id", "key"),
            (("state", IN_PROGRESS),),
        )
        row = None
        for _ in range(3):  # the row we collide with may vanish (below) before we see it
            inserted = session.execute(claim, values).scalar()
            if inserted is not None:
                return Proceed(inserted)
            row = session.execute(
                select(IdempotencyKey)
                .where(IdempotencyKey.api_key_id == api_key_id, IdempotencyKey.key == key)
                .with_for_update()
            ).scalar_one_or_none()
            if row is not None and row.created_at < now - self._retention:
                # A key older than the retention is forgotten: this request is its first.
                session.delete(row)
                session.flush()
                row = None
            if row is not None:
                break
        if row is None:
            return InUse()  # the key churned under us three times: let the client retry
        return self._decide(row, request_fingerprint, now, resource)

    def _decide(
        self,
        row: IdempotencyKey,
        request_fingerprint: str,
        now: datetime,
        resource: tuple[str, str] | None,
    ) -> Decision:
        """What a request meets when its key's row (locked) is already there."""
        if row.fingerprint != request_fingerprint:
            return Reused()
        if row.state == COMPLETED:
            assert row.response_status is not None and row.response_body is not None
            return Replay(row.response_status, dict(row.response_headers or {}), row.response_body)
        if row.locked_at > now - self._lock_timeout:
            return InUse()
        # The owner died: take the key over.
        row.locked_at = now
        if row.resource_type and row.resource_id:
            return Recover(row.pk, row.resource_type, row.resource_id)
        if resource is not None:
            row.resource_type, row.resource_id = resource
        return Proceed(row.pk)

    def finish(
        self, claim: Claim, status: int, headers: dict[str, str], body: bytes
    ) -> Decision | None:
        """Store the request's answer: in its held transaction, committing claim, effect
        and answer together; else in one of its own (claiming first if the request never
        wrote). Returns the earlier request's decision if that claim finds one (answer
        with it instead), else None.

        If the database fails here and the request's effect had already committed (a
        payment's first step), the answer is stored as soon as the database is back; if
        the effect was held, it is gone with the transaction and the error propagates."""
        scope = claim.scope
        effect_committed = scope.claim_committed and scope.session is None
        try:
            self._db.finish(
                scope, lambda session: self._complete_in(session, claim, status, headers, body)
            )
        except Decided as decided:
            return decided.decision
        except StorageError:
            if not effect_committed or claim.pk is None:
                raise
            self.complete_soon(claim.pk, status, headers, body)
        claim.answered = True
        return None

    def release(self, claim: Claim) -> None:
        """The request failed without an answer worth keeping: roll back what it holds and
        free a key it already committed (see `abandon`)."""
        self._db.abort(claim.scope)
        if claim.scope.claim_committed and claim.pk is not None:
            self.abandon_soon(claim.pk)

    def _complete_in(
        self, session: Session, claim: Claim, status: int, headers: dict[str, str], body: bytes
    ) -> None:
        assert claim.pk is not None  # the claim ran first in this or an earlier transaction
        self._write_answer(session, claim.pk, status, headers, body)

    def _write_answer(
        self, session: Session, pk: int, status: int, headers: dict[str, str], body: bytes
    ) -> None:
        # At commit, in one statement with the transaction's other deferred writes
        # (`storage.deferred`): nothing reads the answer back before then.
        defer_update(
            session,
            _WRITE_ANSWER,
            {
                "key_pk": pk,
                "answer_status": status,
                "answer_headers": headers,
                "answer_body": body,
                "answered_at": self._clock(),
            },
        )

    def complete(self, pk: int, status: int, headers: dict[str, str], body: bytes) -> None:
        with self._db.transaction() as session:
            self._write_answer(session, pk, status, headers, body)

    def abandon(self, pk: int) -> None:
        """The request failed without an answer worth keeping: free the key for a retry.

        If its effect did commit (a resource is attached) the row stays, unlocked, so the
        retry answers from the resource."""
        with self._db.transaction() as session:
            gone = session.execute(
                delete(IdempotencyKey).where(
                    IdempotencyKey.pk == pk,
                    IdempotencyKey.state == IN_PROGRESS,
                    IdempotencyKey.resource_id.is_(None),
                )
            )
            if getattr(gone, "rowcount", 0) == 0:
                session.execute(
                    update(IdempotencyKey)
                    .where(IdempotencyKey.pk == pk, IdempotencyKey.state == IN_PROGRESS)
                    .values(locked_at=self._clock() - self._lock_timeout)
                )

    def abandon_soon(self, pk: int) -> None:
        """`abandon`, or, while the database is away, as soon as it is back: a request
        that failed for want of a database must not keep its key locked for the whole
        lock timeout."""
        self._deferred.attempt(lambda: self.abandon(pk))

    def complete_soon(self, pk: int, status: int, headers: dict[str, str], body: bytes) -> None:
        """`complete`, or as soon as the database is back (the answer is already sent)."""
        self._deferred.attempt(lambda: self.complete(pk, status, headers, body))

    def purge_expired(self, limit: int | None = None) -> int:
        """Forget the keys past the retention: all of them, or the `limit` oldest in one
        short transaction (the pruning pass, services/pruning.py, calls it batch after
        batch so that it never holds a long one). Returns how many went."""
        expired = IdempotencyKey.created_at < self._clock() - self._retention
        if limit is not None:
            oldest = (
                select(IdempotencyKey.pk)
                .where(expired)
                .order_by(IdempotencyKey.created_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            expired = IdempotencyKey.pk.in_(oldest.scalar_subquery())
        with self._db.transaction() as session:
            result = session.execute(delete(IdempotencyKey).where(expired))
            return int(getattr(result, "rowcount", 0))


class _Deferred:
    """Writes that failed because the database was away, retried on a daemon thread
    until they succeed or no longer matter (after `give_up_s` the lock timeout frees the
    key anyway). In memory: if the process dies too, the lock timeout still applies."""

    RETRY_S = 0.25

    def __init__(self, give_up_s: float) -> None:
        self._give_up_s = give_up_s
        self._pending: list[tuple[float, Callable[[], None]]] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def attempt(self, write: Callable[[], None]) -> None:
        try:
            write()
        except StorageError as exc:
            log.warning("idempotency record not written (%s); retrying in the background", exc)
            self._keep([(time.monotonic() + self._give_up_s, write)])

    def _keep(self, writes: list[tuple[float, Callable[[], None]]]) -> None:
        with self._lock:
            self._pending.extend(writes)
            if self._pending and (self._thread is None or not self._thread.is_alive()):
                self._thread = threading.Thread(
                    target=self._loop, name="kassa-idempotency-retry", daemon=True
                )
                self._thread.start()

    def run_due(self) -> None:
        """Retry every pending write once; keep those that still fail."""
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return
        kept: list[tuple[float, Callable[[], None]]] = []
        for deadline, write in pending:
            try:
                write()
            except StorageError:
                if time.monotonic() < deadline:
                    kept.append((deadline, write))
            except Exception:
                log.exception("could not release an idempotency key; its lock will time out")
        if kept:
            self._keep(kept)

    def _loop(self) -> None:
        while True:
            time.sleep(self.RETRY_S)
            self.run_due()
            with self._lock:
                if not self._pending:
                    self._thread = None
                    return
