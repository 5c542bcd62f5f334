"""Keeps `bench/versus.py` runnable: kassa's own source against itself, a quick round of
order creates and pays on PostgreSQL. Figures are never asserted (machines are noisy);
the run must finish, with a row per operation and its B/A ratio."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_versus_benchmark_runs() -> None:
    src = str(ROOT / "src")
    command = [sys.executable, str(ROOT / "bench" / "versus.py"), "--quick", "--a", src]
    done = subprocess.run(
        [*command, "--b", src, "--ops", "orders,pay"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line}
    for op in ("orders", "pay"):
        assert float(rows[op][-1]) > 0


def test_a_folder_that_is_not_kassa_s_source_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "versus.py"), "--a", str(tmp_path), "--b", "src"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "not a kassa src folder" in done.stderr
