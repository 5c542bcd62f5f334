"""Keeps the benchmarks runnable: a tiny run of each, checking only that it completes.

Figures are never asserted here (machines are noisy); the benchmark reports them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Few clients, one uvicorn worker: the smallest run that still goes through every phase.
SMALL_HTTP_RUN = ("--quick", "--clients", "3", "--workers", "1")


def run_bench(script: str, *args: str) -> str:
    """Run `bench/<script>` as `make bench` does (a script, not a module); its stdout."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_orders_benchmark_runs() -> None:
    out = run_bench("orders.py", *SMALL_HTTP_RUN, "--orders", "30")
    assert "sqlite" in out and "postgresql" in out
    assert "ratio" in out


def test_orchestrator_benchmark_runs() -> None:
    out = run_bench("orchestrator.py", "--payments", "60")
    assert "double charges" in out.lower()


def test_webhooks_benchmark_runs() -> None:
    out = run_bench("webhooks.py", *SMALL_HTTP_RUN, "--events", "30")
    assert "sqlite" in out and "postgresql" in out
    assert "effects/s" in out
