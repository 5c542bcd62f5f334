"""Keeps `make bench` runnable: a quick run of the suite on each database.

Figures are never asserted (machines are noisy), except the one the method must get right
exactly: the ceiling's statements per operation, BEGIN + INSERT + COMMIT.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
QUICK = ("--quick", "--clients", "3", "--scaling", "")


def run_suite(*args: str) -> tuple[str, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "suite.py"), *QUICK, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    written = done.stdout.rsplit("results written to ", 1)[1].strip()
    return done.stdout, json.loads(Path(written).read_text())


@pytest.mark.slow
def test_the_suite_runs_on_sqlite_with_the_fault_sweep() -> None:
    out, results = run_suite("--databases", "sqlite")
    (sqlite,) = results["results"]
    ops = [row["op"] for row in sqlite["rows"]]
    assert ops == ["orders", "pay", "browser", "ack", "apply", "ceiling"]
    assert all(row["ops"] > 0 and row["cpu_per_op"]["app_ms"] > 0 for row in sqlite["rows"])
    assert sqlite["problems"] == [] and "PROBLEM" not in out
    assert results["faults"]["double_charges"] == 0


@pytest.mark.slow
def test_the_suite_counts_the_ceilings_statements_on_postgresql() -> None:
    _, results = run_suite("--databases", "postgresql", "--no-faults")
    (pg,) = results["results"]
    ceiling = pg["statements"]["ceiling"]
    assert ceiling["statements_per_op"] == 3.0 and ceiling["transactions_per_op"] == 1.0
    assert ceiling["by_keyword_per_op"] == {"BEGIN": 1.0, "INSERT": 1.0, "COMMIT": 1.0}
    assert set(pg["statements"]) == {"ceiling", "orders", "pay", "browser", "ack", "apply"}
    # PostgreSQL's CPU is counted: /proc counts in 10 ms ticks, so a small quick-run row may
    # round to 0, but not all of them (the pay row alone costs the database far more).
    database_ms = [row["cpu_per_op"]["database_ms"] for row in pg["rows"]]
    assert all(ms >= 0 for ms in database_ms) and sum(database_ms) > 0, database_ms
