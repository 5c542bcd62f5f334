"""Keeps `bench/kpis.py` runnable: a quick run on both databases.

Figures are never asserted (machines are noisy); the run must complete, its own checks
(every answer 200, the KPIs' paid orders and the export's rows equal to the bare
queries' counts) must pass, and the table must have both databases' rows.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_kpi_benchmark_runs_on_both_databases() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "kpis.py"), "--quick", "--orders", "2000"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    table = done.stdout.split("database ", 1)[1]
    for database in ("sqlite", "postgresql"):
        rows = [line for line in table.splitlines() if line.startswith(database)]
        assert len(rows) == 3, table
    assert "PROBLEM" not in done.stdout
    written = done.stdout.rsplit("results written to ", 1)[1].strip()
    results = json.loads(Path(written).read_text())
    assert [r["database"] for r in results["results"]] == ["sqlite", "postgresql"]
    for run in results["results"]:
        assert run["problems"] == []
        assert run["seed"]["rows"]["orders"] == 2000
        assert run["export"]["rows"] > 0 and run["kpis"]["kassa"]["requests"] == 5
    assert isinstance(results["target_met"], bool)
