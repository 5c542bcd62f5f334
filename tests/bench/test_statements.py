"""Counting statements and transactions in PostgreSQL's log (bench/statements.py)."""

from __future__ import annotations

from statements import count, entries

DB = "kassa_bench_1"
P = "2026-12-02 00:06:13.016 UTC"


def line(pid: int, text: str, db: str = DB, level: str = "LOG") -> str:
    return f"{P} [{pid}] postgres@{db} {level}:  {text}"


def test_a_transaction_with_a_multi_line_statement_and_its_parameters() -> None:
    log = "\n".join(
        [
            line(10, "statement: BEGIN"),
            line(10, "statement: ;"),  # SQLAlchemy's pre-ping
            line(10, "execute <unnamed>: SELECT orders.id "),
            "\tFROM orders ",
            "\tWHERE orders.id = $1::VARCHAR",
            line(10, "parameters: $1 = 'ord_1'", level="DETAIL"),
            line(10, "execute _pg3_0: INSERT INTO orders (id) VALUES ($1::VARCHAR)"),
            line(10, "statement: COMMIT"),
        ]
    )
    found = count(log, DB, ops=1, exclude=set())
    assert (found.statements, found.transactions, found.claims) == (5, 1, 0)
    assert found.by_keyword == {"BEGIN": 1, ";": 1, "SELECT": 1, "INSERT": 1, "COMMIT": 1}
    (_, select), *_ = [e for e in entries(log, DB, set()) if "orders.id" in e[1]]
    assert select.endswith("WHERE orders.id = $1::VARCHAR")


def test_other_databases_excluded_backends_and_server_lines_are_left_out() -> None:
    log = "\n".join(
        [
            line(11, "statement: BEGIN", db="test"),
            line(11, "statement: COMMIT", db="test"),
            line(12, "statement: SELECT 1"),  # the benchmark's own connection
            f"{P} [2201] LOG:  checkpoint starting: time",
            line(13, "statement: SELECT 1"),
        ]
    )
    found = count(log, DB, ops=2, exclude={12})
    assert (found.statements, found.transactions) == (1, 0)
    assert found.per_op()["statements_per_op"] == 0.5


def test_an_idle_poll_of_the_older_claim_is_left_out_but_a_claim_that_writes_is_not() -> None:
    claim = "execute <unnamed>: SELECT jobs.pk, jobs.kind FROM jobs WHERE x FOR UPDATE SKIP LOCKED"
    log = "\n".join(
        [
            line(20, "statement: BEGIN"),
            line(20, claim),
            line(20, "statement: COMMIT"),
            line(21, "statement: BEGIN"),
            line(21, claim),
            line(21, "execute <unnamed>: UPDATE jobs SET state='running' WHERE jobs.pk IN (1)"),
            line(21, "statement: COMMIT"),
        ]
    )
    found = count(log, DB, ops=1, exclude=set())
    assert (found.statements, found.transactions, found.claims) == (4, 1, 1)


def test_a_one_statement_claim_is_left_out_and_a_job_run_is_not() -> None:
    claim = (
        "execute <unnamed>: UPDATE jobs SET state=$1 WHERE jobs.pk IN (SELECT jobs.pk FROM jobs"
        " WHERE x ORDER BY jobs.run_after LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING jobs.pk"
    )
    log = "\n".join(
        [
            line(22, "statement: BEGIN"),
            line(22, claim),
            line(22, "statement: COMMIT"),
            line(22, "statement: BEGIN"),
            line(22, "execute <unnamed>: UPDATE jobs SET state=$1 WHERE jobs.pk = $2"),
            line(22, "execute <unnamed>: INSERT INTO documents VALUES (1)"),
            line(22, "statement: COMMIT"),
        ]
    )
    found = count(log, DB, ops=1, exclude=set())
    assert (found.statements, found.transactions, found.claims) == (4, 1, 1)


def test_interleaved_sessions_keep_their_own_transactions() -> None:
    log = "\n".join(
        [
            line(30, "statement: BEGIN"),
            line(31, "statement: BEGIN"),
            line(30, "execute <unnamed>: INSERT INTO a VALUES (1)"),
            line(31, "execute <unnamed>: SELECT jobs.pk FROM jobs FOR UPDATE SKIP LOCKED"),
            line(31, "statement: ROLLBACK"),
            line(30, "statement: COMMIT"),
        ]
    )
    found = count(log, DB, ops=1, exclude=set())
    assert (found.statements, found.transactions, found.claims) == (3, 1, 1)


def test_autocommit_writes_are_transactions_reads_are_not_and_a_claim_is_left_out() -> None:
    claim = (
        "execute <unnamed>: UPDATE jobs SET state=$1 WHERE jobs.pk IN (SELECT jobs.pk FROM jobs"
        " WHERE x ORDER BY jobs.run_after LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING jobs.pk"
    )
    log = "\n".join(
        [
            line(40, claim),  # a worker's claim in autocommit
            line(40, "execute <unnamed>: UPDATE jobs SET state=$1 WHERE jobs.pk IN ($2)"),
            line(41, "execute <unnamed>: WITH inserted AS "),
            "\t(INSERT INTO provider_events (event_id) VALUES ($1) RETURNING pk)",
            "\t INSERT INTO jobs (kind) SELECT $2 FROM inserted",
            line(41, "execute <unnamed>: WITH recent AS (SELECT 1) SELECT * FROM recent"),
            line(41, "execute <unnamed>: SELECT orders.id FROM orders"),
        ]
    )
    found = count(log, DB, ops=1, exclude=set())
    assert (found.statements, found.transactions, found.claims) == (4, 2, 1)
