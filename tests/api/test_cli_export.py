"""`kassa export NAME`, run as a real subprocess: the same CSV and the same audit record
as `GET /v1/exports/NAME.csv` (actor `cli`), a progress bar on stderr, one-line errors
with exit 2 for bad input and 1 for an output that cannot be written."""

from __future__ import annotations

import csv
import io
import os
import shutil
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from kassa.bootstrap import Kassa
from kassa.services.exports import CONTRACT
from kassa.storage.tables import AuditRecord
from tests.api.test_cli import KASSA, run_cli
from tests.integration.test_export_streaming import insert_orders


def export_records(kassa: Kassa) -> list[AuditRecord]:
    with kassa.db.transaction(read_only=True) as session:
        return list(
            session.scalars(
                select(AuditRecord)
                .where(AuditRecord.action.like("export.%"))
                .order_by(AuditRecord.pk)
            )
        )


def period_around_now(kassa: Kassa) -> list[str]:
    """From yesterday to today: holds what was made now, whenever the CLI runs."""
    today = kassa.clock().date()
    return ["--from", (today - timedelta(days=1)).isoformat(), "--to", today.isoformat()]


def test_export_writes_the_file_with_progress_on_stderr(
    kassa: Kassa, database_url: str, tmp_path: Path
) -> None:
    insert_orders(kassa, 0, 2_500, kassa.clock())
    (tmp_path / "out").mkdir()  # beside the SQLite database's files
    target = tmp_path / "out" / "orders.csv"
    done = run_cli(
        "export", "orders", *period_around_now(kassa), "-o", str(target),
        env={"KASSA_DATABASE_URL": database_url},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert "orders rows" in done.stderr and "2500/2500" in done.stderr  # the progress bar
    assert done.stderr.strip().endswith(f"2500 row(s) written to {target}")
    rows = list(csv.reader(io.StringIO(target.read_text("utf-8"), newline="")))
    assert rows[0] == list(CONTRACT["orders"]) and len(rows) == 2_501
    assert list(target.parent.iterdir()) == [target]  # no partial file left behind
    (record,) = export_records(kassa)
    assert (record.actor_key_id, record.action) == ("cli", "export.orders")
    assert record.after is not None
    assert (record.after["rows"], record.after["completed"]) == (2_500, True)
    assert record.after["filters"]["from"] == period_around_now(kassa)[1]


def test_export_kpis_for_the_last_7_days(kassa: Kassa, database_url: str) -> None:
    """`kassa export kpis --window 7d`: the KPI daily series as the API exports it."""
    now = datetime.now(UTC)  # the CLI's clock is the real one: 7d ends on its today
    insert_orders(kassa, 0, 3, now)  # three paid orders of 1999 EUR
    done = subprocess.run(
        [*KASSA, "export", "kpis", "--window", "7d"],
        env={**os.environ, "KASSA_DATABASE_URL": database_url},
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rows = list(csv.reader(io.StringIO(done.stdout.decode("utf-8"), newline="")))
    assert rows == [
        list(CONTRACT["kpis"]),
        [now.date().isoformat(), "EUR", "3", "5997", "0", "5997"],
    ]
    assert b"1 row(s) written to stdout" in done.stderr
    (record,) = export_records(kassa)
    assert (record.actor_key_id, record.action) == ("cli", "export.kpis")
    assert record.after is not None and record.after["filters"]["window"] == "7d"


def test_export_to_stdout(kassa: Kassa, database_url: str) -> None:
    done = subprocess.run(
        [*KASSA, "export", "products"],
        env={**os.environ, "KASSA_DATABASE_URL": database_url},
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == (",".join(CONTRACT["products"]) + "\r\n").encode()  # bytes as made
    assert b"0 row(s) written to stdout" in done.stderr


def test_bad_input_is_one_line_and_exit_2(sqlite_template: Path, tmp_path: Path) -> None:
    """The period rules themselves are the API's (tests/unit/test_calendar.py); here,
    that a mistake is one line and exit 2, whatever the database (a SQLite copy, once)."""
    database = tmp_path / "kassa.db"
    shutil.copy(sqlite_template, database)
    env = {"KASSA_DATABASE_URL": f"sqlite:///{database}"}
    (tmp_path / "out").mkdir()
    target = tmp_path / "out" / "x.csv"
    cases = {
        ("export", "bogus", "--window", "today"): "error: no export named 'bogus'; available:",
        ("export", "orders", "--from", "2026-13-01", "--to", "2026-12-01"): "error: from: ",
        ("export", "orders", "--window", "fortnight"): "error: window: 'fortnight' is not one",
        ("export", "products", "--window", "7d"): "error: window: the products export is the",
    }
    for args, message in cases.items():
        done = run_cli(*args, "-o", str(target), env=env)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.startswith(message), (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr  # no traceback
    assert list(target.parent.iterdir()) == []  # nothing written, not even a partial file
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT count(*) FROM audit_log").fetchone() == (0,)


def test_an_output_that_cannot_be_written_is_exit_1(
    kassa: Kassa, database_url: str, tmp_path: Path
) -> None:
    env = {"KASSA_DATABASE_URL": database_url}
    done = run_cli("export", "products", "-o", str(tmp_path / "missing" / "x.csv"), env=env)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == "error: cannot write the export: No such file or directory"
    assert export_records(kassa) == []  # it failed before reading anything


def test_a_reader_that_goes_away_ends_the_export_audited_as_incomplete(
    kassa: Kassa, database_url: str
) -> None:
    """`kassa export orders | head`: the pipe closes early; one line, exit 1."""
    insert_orders(kassa, 0, 5_000, kassa.clock())
    proc = subprocess.Popen(
        [*KASSA, "export", "orders", *period_around_now(kassa)],
        env={**os.environ, "KASSA_DATABASE_URL": database_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    head = proc.stdout.read(200)
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 1, stderr
    assert head.startswith(b"id,number,status")
    assert stderr.strip().splitlines()[-1] == "error: cannot write the export: Broken pipe"
    assert "Traceback" not in stderr
    (record,) = export_records(kassa)
    assert record.after is not None and record.after["completed"] is False
    assert record.after["rows"] < 5_000
