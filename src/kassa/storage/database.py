"""Engine set-up and transactions.

Every state change runs in one `Database.transaction()`. On PostgreSQL that is a plain
READ COMMITTED transaction and the services take row locks or use conditional updates.
SQLite has no row locks, so a write transaction starts with `BEGIN IMMEDIATE`: it takes
the database's single write lock up front (waiting up to the busy timeout) instead of
failing half-way when a reader tries to upgrade. Read-only transactions use a plain
deferred `BEGIN` and run beside writers thanks to WAL.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from typing import Any, cast

from sqlalchemy import (
    Engine,
    Table,
    create_engine,
    event,
    func,
    insert,
    inspect,
    make_url,
    select,
)
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import ScalarSelect

from kassa.config import normalize_database_url
from kassa.storage.errors import DatabaseUrlInvalid, SchemaMissing, storage_error

_WRITE = "kassa_write"
SQLITE_BUSY_TIMEOUT_MS = 30_000
# A server that does not answer a connect within this long counts as down (503), rather
# than holding every request for the operating system's TCP timeout.
PG_CONNECT_TIMEOUT_S = 5


@contextmanager
def storage_errors() -> Iterator[None]:
    """Re-raise an outage or a missing schema as `kassa.storage.errors`' own errors."""
    try:
        yield
    except Exception as exc:
        translated = storage_error(exc)
        if translated is None or translated is exc:
            raise
        raise translated from exc


@dataclass(eq=False)
class RequestScope:
    """The write transactions of one API request that carries an Idempotency-Key.

    `kassa.services.idempotency` opens one around the request (`Database.scoped`), so that
    the key's claim, the effect and the stored answer share transactions instead of each
    taking its own:

    - `on_open(session)` runs first in the request's first write transaction (the claim:
      insert the key's row, or raise to answer from an earlier request instead);
    - a transaction opened with `hold=True`, or any one while `hold_all` is set (a request
      whose effect is local: no provider call), is not committed at the end of its block
      but held open, and every later transaction of the request joins it, until
      `Database.finish` writes the answer into it and commits the lot: claim, effect and
      answer become visible together or not at all.
    """

    on_open: Callable[[Session], None]
    hold_all: bool = False
    session: Session | None = None
    opened: bool = False  # on_open has run in a transaction that committed or is held
    claim_committed: bool = False  # ... and that transaction committed


_SCOPE: ContextVar[RequestScope | None] = ContextVar("kassa_request_scope", default=None)


def table_of(model: type[Any]) -> Table:
    """A mapped class's table, for Core statements on hot paths: an INSERT of a Table
    executes at once without the ORM's unit of work (a third of an order's CPU before)."""
    return cast(Table, model.__table__)


def write_only_insert(model: type[Any]) -> Insert:
    """`INSERT INTO <model's table>` for a row the writer never reads back (an audit
    record, a job, a log line), built once and kept: execute it with the row's values.

    Inline, so it asks for no `RETURNING pk` (SQLAlchemy adds one to every single-row
    Core insert of a table with a generated key, to fill `inserted_primary_key`): the
    driver then builds no result for it. Measured on PostgreSQL (issue 10), this and
    building the statement once take 60-140 us off each such insert."""
    return _inline_insert(table_of(model))


@cache
def _inline_insert(table: Table) -> Insert:
    return insert(table).inline()


def insert_new(session: Session, row: object) -> None:
    """Write a new mapped object's row with a Core insert (`write_only_insert`), leaving
    the object out of the session: for a row written once in its transaction and never
    changed there, whose object the caller only reads (e.g. for its view). Only the
    attributes set on the object are written, so the others take their columns' defaults
    as the unit of work would give them; those (and a generated primary key) are not read
    back into the object."""
    session.execute(write_only_insert(type(row)), columns_set(row))


def columns_set(row: object) -> dict[str, Any]:
    """A new mapped object's values by column name: the attributes set on it."""
    given = inspect(row).dict
    return {
        attr.columns[0].name: given[attr.key]
        for attr in inspect(type(row)).column_attrs
        if attr.key in given
    }


def next_pk(model: Any, dialect: str) -> ScalarSelect[Any]:
    """The primary key the next row of `model`'s table will get, as a scalar subquery to
    draw it inside a statement the caller runs anyway (an order's products read), so that
    values derived from it (an order's number) go into the INSERT itself, with no UPDATE
    after it and no round trip of its own before it.

    PostgreSQL: the column's sequence (concurrent transactions each draw their own). The
    subquery is uncorrelated, so PostgreSQL runs it once per execution (an InitPlan),
    however many rows the outer query returns; a statement that returns no row may leave
    a gap in the sequence, which keys and order numbers allow. SQLite: one past the
    largest, which is safe because a write transaction holds the database's only write
    lock from its BEGIN IMMEDIATE."""
    table = table_of(model)
    drawn: ColumnElement[Any]
    if dialect == "postgresql":
        drawn = func.nextval(func.pg_get_serial_sequence(table.name, "pk"))
    else:
        drawn = func.coalesce(func.max(table.c.pk), 0) + 1
    return select(drawn).scalar_subquery()


class SchemaStatus(enum.Enum):
    CURRENT = "current"
    MISSING = "missing"  # no kassa tables at all
    BEHIND = "behind"  # migrated to an older revision than this code's
    AHEAD = "ahead"  # a revision this code does not know (a newer release migrated it)


def _sqlite_engine(url: str) -> Engine:
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get(_WRITE, True)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def make_engine(url: str) -> Engine:
    url = normalize_database_url(url)
    try:
        if url.startswith("sqlite"):
            return _sqlite_engine(url)
        connect_args: dict[str, Any] = {}
        if make_url(url).get_backend_name() == "postgresql":
            connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT_S
        # No pool_pre_ping (a round trip on every checkout): when a connection turns out
        # to be dead, SQLAlchemy invalidates the whole pool, so after an outage one
        # request per process gets a 503 and every later checkout opens a fresh
        # connection; kassa recovers by itself when the database is back.
        return create_engine(url, pool_size=10, max_overflow=20, connect_args=connect_args)
    except ImportError as exc:
        raise DatabaseUrlInvalid(f"no driver for it: {exc}") from exc
    except Exception as exc:
        translated = storage_error(exc)
        if translated is None:
            raise
        raise translated from exc


class Database:
    """One engine and the transactions on it."""

    def __init__(self, url: str) -> None:
        self.url = normalize_database_url(url)
        self.engine = make_engine(self.url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._write = sessionmaker(
            bind=self.engine.execution_options(**{_WRITE: True}), expire_on_commit=False
        )
        # PostgreSQL reads run in autocommit: under READ COMMITTED each statement takes
        # its own snapshot whether or not a transaction wraps it, so BEGIN and COMMIT would
        # be two round trips that change nothing (a one-statement read was three). SQLite
        # keeps its deferred BEGIN: there the transaction holds one snapshot for all.
        read_options: dict[str, Any] = {_WRITE: False}
        if not self.is_sqlite:
            read_options["isolation_level"] = "AUTOCOMMIT"
        self._read = sessionmaker(
            bind=self.engine.execution_options(**read_options), expire_on_commit=False
        )
        # Writes that are each one atomic statement (a worker's claim, a batch's done
        # mark, a webhook's store-and-enqueue) need no BEGIN and COMMIT on PostgreSQL:
        # a statement in autocommit is a transaction of its own. SQLite writes keep their
        # BEGIN IMMEDIATE (see `autocommit`).
        self._autocommit = (
            sessionmaker(
                bind=self.engine.execution_options(
                    **{_WRITE: True, "isolation_level": "AUTOCOMMIT"}
                ),
                expire_on_commit=False,
            )
            if not self.is_sqlite
            else self._write
        )
        snapshot_options: dict[str, Any] = (
            {_WRITE: False} if self.is_sqlite else {"isolation_level": "REPEATABLE READ"}
        )
        self._snapshot = sessionmaker(
            bind=self.engine.execution_options(**snapshot_options), expire_on_commit=False
        )

    @contextmanager
    def transaction(self, *, read_only: bool = False, hold: bool = False) -> Iterator[Session]:
        """A session inside one transaction: committed on success, rolled back on error.

        Inside a `RequestScope` (see there) a write transaction runs the scope's claim
        first, and one opened with `hold=True` (or any, for a local request) is held open
        for `finish`; while one is held, every transaction joins it, so the request sees
        its own writes and never waits on its own locks."""
        scope = _SCOPE.get()
        if scope is not None and scope.session is not None:
            yield scope.session  # joined: the scope commits or rolls back
            return
        if scope is None or read_only:
            factory = self._read if read_only else self._write
            with storage_errors(), factory() as session, session.begin():
                yield session
            return
        with storage_errors():
            session = self._write()
            try:
                session.begin()
                claims = not scope.opened
                if claims:
                    scope.on_open(session)
                yield session
                if hold or scope.hold_all:
                    scope.session = session
                else:
                    session.commit()
                    scope.claim_committed = scope.claim_committed or claims
                scope.opened = True
            except BaseException:
                session.rollback()
                raise
            finally:
                if scope.session is not session:
                    session.close()

    @contextmanager
    def autocommit(self) -> Iterator[Session]:
        """A session for writes each of which is atomic on its own and needs none with the
        others (one `UPDATE ... RETURNING`, one data-modifying CTE): on PostgreSQL every
        statement commits by itself, which spares the BEGIN and COMMIT round trips (a
        one-statement write was three). On SQLite, and inside a request scope (whose claim
        must come first, in the same transaction), it is `transaction()`.

        A block that runs several statements gets no atomicity across them: use it only
        where a failure between two of them leaves nothing half-done."""
        if self.is_sqlite or _SCOPE.get() is not None:
            with self.transaction() as session:
                yield session
            return
        with storage_errors(), self._autocommit() as session, session.begin():
            yield session

    @contextmanager
    def poll(self) -> Iterator[Session]:
        """A session for one read that needs no transaction around it: a poll asking
        whether there is work (the dispatcher's, the senders'), which an idle worker sends
        every fraction of a second. On PostgreSQL it runs in autocommit (one round trip,
        not three); on SQLite in a read transaction (a deferred BEGIN takes no lock)."""
        if self.is_sqlite or _SCOPE.get() is not None:
            with self.transaction(read_only=True) as session:
                yield session
            return
        with storage_errors(), self._autocommit() as session, session.begin():
            yield session

    @contextmanager
    def scoped(self, scope: RequestScope) -> Iterator[RequestScope]:
        """Run the block (and the threads it starts with a copy of its context: FastAPI's
        thread pool) inside `scope`; a transaction still held at the end is rolled back
        (the caller `finish`es the ones it wants)."""
        token = _SCOPE.set(scope)
        try:
            yield scope
        finally:
            _SCOPE.reset(token)
            self.abort(scope)

    def finish(self, scope: RequestScope, write: Callable[[Session], None]) -> None:
        """Run `write` (storing the answer) in the scope's held transaction and commit it;
        with none held, in a transaction of its own, which runs the claim first if no
        transaction of the request has yet."""
        with storage_errors():
            session = scope.session
            if session is None:
                session = self._write()
                session.begin()
            try:
                if not scope.opened:
                    scope.on_open(session)
                write(session)
                session.commit()
                scope.opened = scope.claim_committed = True
            except BaseException:
                session.rollback()
                raise
            finally:
                scope.session = None
                session.close()

    def abort(self, scope: RequestScope) -> None:
        """Roll back the transaction the scope holds, if any: the request failed."""
        session, scope.session = scope.session, None
        if not scope.claim_committed:
            scope.opened = False  # a claim made in the held transaction goes with it
        if session is not None:
            try:
                session.rollback()
            finally:
                session.close()

    @contextmanager
    def snapshot(self) -> Iterator[Session]:
        """A read-only transaction that sees one consistent state from its first query to
        its end (REPEATABLE READ on PostgreSQL; a WAL read transaction on SQLite), for
        checks that compare several tables."""
        with storage_errors(), self._snapshot() as session, session.begin():
            yield session

    def ping(self) -> bool:
        try:
            with storage_errors(), self.engine.connect() as conn:
                conn.execution_options(**{_WRITE: False}).exec_driver_sql("SELECT 1")
        except Exception:
            return False
        return True

    def schema_status(self) -> SchemaStatus:
        """Whether the database holds this code's schema (its alembic revision is the
        head). Raises `DatabaseUnavailable` when the database does not answer."""
        from kassa.storage.migrate import revisions

        heads, known = revisions()
        with storage_errors(), self.engine.connect() as conn:
            conn.execution_options(**{_WRITE: False})
            if not inspect(conn).has_table("alembic_version"):
                return SchemaStatus.MISSING
            current = {
                str(v)
                for v in conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars()
            }
        if current == heads:
            return SchemaStatus.CURRENT
        if not current:
            return SchemaStatus.MISSING
        return SchemaStatus.BEHIND if current <= known else SchemaStatus.AHEAD

    def require_schema(self) -> None:
        """Raise `SchemaMissing` unless the schema is this code's (or a newer one)."""
        status = self.schema_status()
        if status is SchemaStatus.MISSING:
            raise SchemaMissing()
        if status is SchemaStatus.BEHIND:
            raise SchemaMissing("it is migrated to an older revision than this kassa's")

    def dispose(self) -> None:
        self.engine.dispose()
