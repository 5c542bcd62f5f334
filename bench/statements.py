"""Statements and transactions per operation, read from PostgreSQL's statement log.

How. `ALTER DATABASE <scratch> SET log_statement = 'all'` (the benchmark connects as a
superuser) makes every session that starts afterwards log each statement it runs; the
servers are started after it, so all their connections log. PostgreSQL's stderr is its
log file here (`logging_collector` off): `log_file()` finds it from the postmaster's own
file descriptor 2, so a differently set up server is refused rather than misread. The log
between two byte offsets, taken at quiet points around N operations run one at a time,
holds their statements and those of the background work they caused. Lines are kept only
for the scratch database (the prefix carries `user@database`, `log_line_prefix` must
have `%p` and `%d`) and without the benchmark's own connections.

What is counted. Every logged statement (psycopg and SQLAlchemy send BEGIN and COMMIT as
statements of their own, and they are round trips, so they count), and the transactions:
the BEGINs, plus each write sent outside one (a one-statement write in autocommit, which
is a transaction by itself; reads outside one are not counted as transactions). A *claim*,
a transaction in which a worker only claimed due jobs (or, in autocommit, the claim
statement alone), is counted apart and left out. Most are an idle worker's polls (every
half second), not work an operation caused. Since the claim became one statement (`UPDATE
jobs ... WHERE pk IN (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING ...`, issue 10), the
log no longer tells a poll that found nothing from one that leased jobs (it shows no row
counts), so the claims that did lease an operation's jobs are left out too: one statement
and one transaction per claim, and a claim can lease several jobs at once (a pay's
background work takes two or three). The older two-statement claim (a SELECT ... FOR
UPDATE, then an UPDATE when it found jobs) was counted only when it found jobs.

Logging costs CPU, so this runs in a phase of its own, never while CPU is measured, and
the setting is reset afterwards (`statement_logging`).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

# "2026-12-02 00:00:04.689 UTC [2201] postgres@kassa_bench_1a2b LOG:  statement: BEGIN"
_ENTRY = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \S+ \[(?P<pid>\d+)\] "
    r"(?:(?P<user>[^@\s]*)@(?P<db>\S*) )?(?P<level>[A-Z]+):  (?P<text>.*)$"
)
_STATEMENT = re.compile(r"^(?:statement|execute [^:]+): (?P<sql>.*)$", re.DOTALL)
CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "START", "SAVEPOINT", "RELEASE")


def log_file(conn: psycopg.Connection[Any]) -> Path:
    """The file PostgreSQL writes its log to, or RuntimeError if it cannot be read here."""
    settings = dict(
        conn.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN "
            "('logging_collector', 'log_destination', 'log_line_prefix')"
        ).fetchall()
    )
    if settings.get("logging_collector") != "off" or settings.get("log_destination") != "stderr":
        raise RuntimeError(f"the statement log needs stderr without the collector: {settings}")
    prefix = settings.get("log_line_prefix", "")
    if "%p" not in prefix or "%d" not in prefix:
        raise RuntimeError(f"log_line_prefix {prefix!r} lacks %p or %d")
    row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    postmaster = _parent(int(row[0]))
    path = Path(os.readlink(f"/proc/{postmaster}/fd/2"))
    if not path.is_file() or not os.access(path, os.R_OK):
        raise RuntimeError(f"PostgreSQL's stderr goes to {path}, which is not a readable file")
    return path


def _parent(pid: int) -> int:
    raw = Path(f"/proc/{pid}/stat").read_text()
    return int(raw[raw.rindex(")") + 2 :].split()[1])


@contextmanager
def statement_logging(admin_url: str, database: str) -> Iterator[Path]:
    """`log_statement = 'all'` for new sessions on `database`, reset afterwards; yields
    the log file."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        path = log_file(conn)
        conn.execute(f"ALTER DATABASE \"{database}\" SET log_statement = 'all'")
        try:
            yield path
        finally:
            conn.execute(f'ALTER DATABASE "{database}" RESET log_statement')


@dataclass
class Transaction:
    statements: list[str] = field(default_factory=list)

    @property
    def claim_only(self) -> bool:
        """Only claimed due jobs (one statement, idle or not), or only looked for them and
        found none (the older claim's SELECT ... FOR UPDATE without its UPDATE)."""
        work = [s for s in self.statements if keyword(s) not in CONTROL]
        return bool(work) and all(_is_claim(s) for s in work)


def _is_claim(sql: str) -> bool:
    upper = sql.upper()
    if " JOBS" not in upper or "FOR UPDATE" not in upper:
        return False
    return keyword(sql) == "SELECT" or (keyword(sql) == "UPDATE" and "SKIP LOCKED" in upper)


def keyword(sql: str) -> str:
    """The statement's first word ("SELECT"), or ";" for an empty statement: what
    SQLAlchemy's pool pre-ping sends through psycopg."""
    words = sql.split(None, 1)
    return (words[0].upper().rstrip(";") or ";") if words else ";"


@dataclass
class Count:
    """What N operations (and their background work) ran."""

    ops: int
    statements: int
    transactions: int
    by_keyword: dict[str, int]
    claims: int  # claim-only transactions, left out of the figures above

    def per_op(self) -> dict[str, Any]:
        n = max(self.ops, 1)
        return {
            "ops": self.ops,
            "statements_per_op": round(self.statements / n, 2),
            "transactions_per_op": round(self.transactions / n, 2),
            "by_keyword_per_op": {k: round(v / n, 2) for k, v in sorted(self.by_keyword.items())},
            "claim_transactions_left_out": self.claims,
        }


def entries(text: str, database: str, exclude: set[int]) -> Iterator[tuple[int, str]]:
    """(pid, statement) for each statement logged by `database`'s sessions, a statement's
    continuation lines joined to it."""
    pid, sql, keep = 0, "", False
    for line in text.splitlines():
        match = _ENTRY.match(line)
        if match is None:
            if keep:
                sql += "\n" + line
            continue
        if keep:
            yield pid, sql
        statement = _STATEMENT.match(match["text"]) if match["level"] == "LOG" else None
        pid = int(match["pid"])
        keep = statement is not None and match["db"] == database and pid not in exclude
        sql = statement["sql"] if statement is not None else ""
    if keep:
        yield pid, sql


def count(text: str, database: str, ops: int, exclude: set[int]) -> Count:
    """Statements and transactions in a stretch of the log, claims left out."""
    open_: dict[int, Transaction] = {}
    done: list[Transaction] = []
    loose: list[str] = []  # outside any BEGIN ... COMMIT
    for pid, sql in entries(text, database, exclude):
        word = keyword(sql)
        if word in ("BEGIN", "START"):
            open_[pid] = Transaction([sql])
        elif pid in open_:
            open_[pid].statements.append(sql)
            if word in ("COMMIT", "ROLLBACK", "END"):
                done.append(open_.pop(pid))
        else:
            loose.append(sql)
    done.extend(open_.values())
    kept = [t for t in done if not t.claim_only]
    # Outside BEGIN ... COMMIT: reads, and writes in autocommit, each its own transaction
    # (a claim among them is left out, as a claim-only transaction is).
    loose_claims = [s for s in loose if _is_claim(s)]
    loose = [s for s in loose if not _is_claim(s)]
    statements = [s for t in kept for s in t.statements] + loose
    return Count(
        ops=ops,
        statements=len(statements),
        transactions=sum(1 for t in kept if keyword(t.statements[0]) in ("BEGIN", "START"))
        + sum(1 for s in loose if _writes(s)),
        by_keyword=dict(Counter(keyword(s) for s in statements)),
        claims=len(done) - len(kept) + len(loose_claims),
    )


_WRITE_WORDS = re.compile(r"\b(INSERT|UPDATE|DELETE)\b", re.IGNORECASE)


def _writes(sql: str) -> bool:
    """Whether a statement run outside BEGIN ... COMMIT wrote: a write in autocommit,
    which is a transaction by itself (a plain INSERT, UPDATE or DELETE, or a WITH whose
    parts do one)."""
    word = keyword(sql)
    return word in ("INSERT", "UPDATE", "DELETE") or (
        word == "WITH" and _WRITE_WORDS.search(sql) is not None
    )


class StatementLog:
    """Offsets into the log file, and what was logged between two of them."""

    def __init__(self, path: Path, database: str, exclude: set[int]) -> None:
        self.path = path
        self.database = database
        self.exclude = exclude

    def offset(self) -> int:
        return self.path.stat().st_size

    def _read(self, offset: int) -> str:
        with self.path.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def since(self, offset: int, ops: int) -> Count:
        return count(self._read(offset), self.database, ops, self.exclude)

    def transcript(self, offset: int) -> str:
        """The statements logged since `offset`, one entry each ("[pid] sql"), claims and
        all: for reading what an operation ran, not for counting."""
        found = entries(self._read(offset), self.database, self.exclude)
        return "".join(f"[{pid}] {sql}\n" for pid, sql in found)
