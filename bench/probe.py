"""The benchmark's own connection to a scratch database: is any job due, is any write
open, and the checks at the end of a run.

One connection, opened once: on PostgreSQL its backend is known (`backend_pid`) and left
out of the CPU figures and the statement counts. Queries are plain SQL written once, with
`%s` placeholders (turned into `?` for sqlite3).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from cpu import PostgresScope
from harness import Target, _open_sqlite
from statements import _parent

# Due: running (a worker has it now), queued and its time has come, or queued again after
# a failure and waiting out its backoff (an event applied before the payment it reports was
# settled waits a few seconds: work the operations caused, still to come). A job queued
# for later that never ran (a payment's resume guard) is not due.
JOBS_DUE = (
    "SELECT count(*) FROM jobs WHERE state = 'running' "
    "OR (state = 'queued' AND (run_after <= %s OR attempts > 0))"
)


class Probe:
    def __init__(self, target: Target) -> None:
        self.target = target
        self._sqlite: sqlite3.Connection | None = None
        self._pg: psycopg.Connection[Any] | None = None
        self.backend_pid: int | None = None
        if target.sqlite_path is not None:
            self._sqlite = _open_sqlite(target.sqlite_path)
        else:
            self._pg = psycopg.connect(target.url, autocommit=True)
            self.backend_pid = int(self.rows("SELECT pg_backend_pid()")[0][0])

    @property
    def database(self) -> str:
        return self.target.url.rsplit("/", 1)[-1]

    def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
        if self._pg is not None:
            self._pg.close()

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self._pg is not None:
            return list(self._pg.execute(sql, params).fetchall())
        assert self._sqlite is not None
        return list(self._sqlite.execute(sql.replace("%s", "?"), tuple(params)).fetchall())

    def _now(self) -> Any:
        now = datetime.now(UTC)
        # SQLite holds kassa's times as naive UTC text (SQLAlchemy's format), which sorts.
        return now if self._pg is not None else now.strftime("%Y-%m-%d %H:%M:%S.%f")

    def jobs_due(self) -> int:
        return int(self.rows(JOBS_DUE, (self._now(),))[0][0])

    def retried_jobs(self) -> dict[str, int]:
        """Jobs that ran more than once (a failure, then a retry), by kind."""
        rows = self.rows("SELECT kind, count(*) FROM jobs WHERE attempts > 1 GROUP BY kind")
        return {str(kind): int(n) for kind, n in rows}

    def postgres_scope(self) -> PostgresScope | None:
        """This database's PostgreSQL processes, less this connection's backend."""
        if self.backend_pid is None:
            return None
        return PostgresScope(
            postmaster=_parent(self.backend_pid),
            database=self.database,
            exclude=frozenset({self.backend_pid}),
        )

    def write_open(self) -> bool:
        """Whether some other connection is inside a transaction (PostgreSQL) or holds the
        write lock (SQLite): a process stopped now would keep it."""
        if self._pg is not None:
            busy = self.rows(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND state <> 'idle'"
            )
            return int(busy[0][0]) > 0
        assert self.target.sqlite_path is not None
        conn = sqlite3.connect(self.target.sqlite_path, timeout=0.2, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError:
            return True
        finally:
            conn.close()
