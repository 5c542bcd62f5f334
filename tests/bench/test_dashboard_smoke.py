"""Keeps `bench/dashboard.py` runnable: a tiny run on SQLite, end to end.

Figures are never asserted (machines are noisy). The run must complete with its own checks
passing (the sign-in through the forms, every answer 200 with the order's number on its
page, the fresh orders' invoices, credit notes and e-mails all issued), and its table and
results file must hold every row, each with its statements counted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARGS = ("--databases", "sqlite", "--orders", "200", "--requests", "4", "--warmup", "1")


@pytest.mark.slow
def test_the_dashboard_benchmark_runs_on_sqlite() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "dashboard.py"), *ARGS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "PROBLEM" not in done.stdout
    table = [line for line in done.stdout.splitlines() if line.startswith("sqlite ")]
    assert len(table) == 14, done.stdout  # 5 pages, 9 API rows beside them
    written = done.stdout.rsplit("results written to ", 1)[1].strip()
    (run,) = json.loads(Path(written).read_text())["results"]
    assert run["problems"] == []
    assert run["seed"]["rows"]["orders"] == 200
    assert [(o["payments"], o["refunds"]) for o in run["fresh_orders"]] == [(1, 1), (10, 10)]
    rows = [row for group in run["groups"] for row in group["rows"]]
    assert all(row["requests"] == 4 and row["statements"] > 0 for row in rows)
    small, full = run["order_page_statements_small_full"]
    assert small > 0 and full > 0
