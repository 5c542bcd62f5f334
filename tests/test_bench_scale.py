"""Keeps bench/scale.py runnable: a tiny run through every phase (seed, serve both
databases, CPU rounds, lists, pruning), checking only that it completes and reports.

Figures are never asserted here (machines are noisy); the benchmark reports them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_scale_benchmark_runs() -> None:
    small = ["--quick", "--orders", "3000", "--creates", "12", "--pays", "6", "--clients", "2"]
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "scale.py"), *small, "--list-requests", "6"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for heading in ("CPU per operation", "List latency", "Pruning pass", "idempotency_keys"):
        assert heading in done.stdout, done.stdout
