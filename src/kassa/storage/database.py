"""Engine set-up and transactions.

Every state change runs in one `Database.transaction()`. On PostgreSQL that is a plain
READ COMMITTED transaction and the services take row locks or use conditional updates.
SQLite has no row locks, so a write transaction starts with `BEGIN IMMEDIATE`: it takes
the database's single write lock up front (waiting up to the busy timeout) instead of
failing half-way when a reader tries to upgrade. Read-only transactions use a plain
deferred `BEGIN` and run beside writers thanks to WAL.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from kassa.config import normalize_database_url

_WRITE = "kassa_write"
SQLITE_BUSY_TIMEOUT_MS = 30_000


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
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


class Database:
    """One engine and the transactions on it."""

    def __init__(self, url: str) -> None:
        self.url = normalize_database_url(url)
        self.engine = make_engine(self.url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._write = sessionmaker(
            bind=self.engine.execution_options(**{_WRITE: True}), expire_on_commit=False
        )
        self._read = sessionmaker(
            bind=self.engine.execution_options(**{_WRITE: False}), expire_on_commit=False
        )
        snapshot_options: dict[str, Any] = (
            {_WRITE: False} if self.is_sqlite else {"isolation_level": "REPEATABLE READ"}
        )
        self._snapshot = sessionmaker(
            bind=self.engine.execution_options(**snapshot_options), expire_on_commit=False
        )

    @contextmanager
    def transaction(self, *, read_only: bool = False) -> Iterator[Session]:
        """A session inside one transaction: committed on success, rolled back on error."""
        factory = self._read if read_only else self._write
        with factory() as session, session.begin():
            yield session

    @contextmanager
    def snapshot(self) -> Iterator[Session]:
        """A read-only transaction that sees one consistent state from its first query to
        its end (REPEATABLE READ on PostgreSQL; a WAL read transaction on SQLite), for
        checks that compare several tables."""
        with self._snapshot() as session, session.begin():
            yield session

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except Exception:
            return False
        return True

    def dispose(self) -> None:
        self.engine.dispose()
