"""What can go wrong with the database itself, as opposed to with a request.

The drivers and SQLAlchemy report an outage in a dozen shapes (a refused connect, a
backend terminated mid-query, a closed connection, a pool that timed out); an
unmigrated database as "no such table" or `UndefinedTable`. `storage_error` turns each
into one of the few errors below, so adapters map them once: the API to 503, the CLI to
a one-line message and exit status 1, the worker to a logged line and a back-off.
Anything else (a constraint, a deadlock, a locked SQLite file) is left as it is.
"""

from __future__ import annotations

import sqlite3

import psycopg
from sqlalchemy import exc as sa_exc

# psycopg reports a failed connect with no SQLSTATE; these are the server's own words
# for "not now": connection exceptions (08), shutdowns (57P01-03), too many clients.
_OUTAGE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300")
_SQLITE_OUTAGE = ("unable to open database file", "disk i/o error")


class StorageError(Exception):
    """The database cannot serve kassa; `str()` says what to do about it."""


class DatabaseUnavailable(StorageError):
    """The database does not answer (down, refusing connections, connection lost)."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"the database is unavailable ({reason}): check KASSA_DATABASE_URL and that "
            "the database server is running"
        )
        self.reason = reason


class SchemaMissing(StorageError):
    """The database is reachable but has no (or an older) kassa schema."""

    def __init__(self, reason: str = "it has no kassa tables") -> None:
        super().__init__(f"the database is not migrated ({reason}): run `kassa migrate`")
        self.reason = reason


class DatabaseUrlInvalid(StorageError):
    """KASSA_DATABASE_URL names nothing kassa can connect to."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"KASSA_DATABASE_URL is not a usable database URL ({reason}): check "
            "KASSA_DATABASE_URL (e.g. postgresql://user@host/db or sqlite:///kassa.db)"
        )
        self.reason = reason


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line.removeprefix("connection failed: ").strip()


def _is_outage(orig: BaseException) -> bool:
    if isinstance(orig, psycopg.InterfaceError):
        return True
    if isinstance(orig, psycopg.OperationalError):
        state = orig.sqlstate
        return state is None or state.startswith(_OUTAGE_SQLSTATES)
    if isinstance(orig, sqlite3.OperationalError):
        return str(orig).lower().startswith(_SQLITE_OUTAGE)
    return False


def _is_schema_missing(orig: BaseException) -> bool:
    if isinstance(orig, psycopg.errors.UndefinedTable):
        return True
    return isinstance(orig, sqlite3.OperationalError) and str(orig).startswith("no such table")


def storage_error(exc: BaseException) -> StorageError | None:
    """The storage error `exc` stands for, or None if it is not about the database."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, sa_exc.TimeoutError):  # every pooled connection is busy or hung
        return DatabaseUnavailable("no connection free in the pool")
    if isinstance(exc, sa_exc.NoSuchModuleError | sa_exc.ArgumentError):
        return DatabaseUrlInvalid(_first_line(exc))
    orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return DatabaseUnavailable(_first_line(orig))
    if _is_outage(orig):
        return DatabaseUnavailable(_first_line(orig))
    if _is_schema_missing(orig):
        return SchemaMissing(_first_line(orig))
    return None
