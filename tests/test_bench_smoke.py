"""Keeps the benchmarks runnable: a tiny run of each, checking only that it completes.

Figures are never asserted here (machines are noisy); the benchmark reports them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_orders_benchmark_runs(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "orders.py"),
            "--quick",
            "--orders",
            "30",
            "--clients",
            "3",
            "--workers",
            "1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sqlite" in done.stdout and "postgresql" in done.stdout
    assert "ratio" in done.stdout


def test_orchestrator_benchmark_runs() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "orchestrator.py"), "--payments", "60"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "double charges" in done.stdout.lower()
