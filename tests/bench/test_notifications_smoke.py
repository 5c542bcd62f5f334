"""Keeps `bench/notifications.py` runnable: a quick run on SQLite.

Figures are never asserted (machines are noisy); the run must complete with its own checks
passing (every delivery of each burst made at its first attempt and received, signatures
verified, every order paid once), and each phase must be there with what it is about:
deliveries where there were endpoints, none where there were not, and the hanging
endpoint's requests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
QUICK = ("--quick", "--databases", "sqlite", "--clients", "3")


@pytest.mark.slow
def test_the_notifications_benchmark_runs_on_sqlite() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "notifications.py"), *QUICK],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "PROBLEM" not in done.stdout
    written = done.stdout.rsplit("results written to ", 1)[1].strip()
    results = json.loads(Path(written).read_text())
    (sqlite,) = results["results"]
    assert sqlite["problems"] == []
    phases = {p["label"]: p for p in sqlite["phases"]}
    assert list(phases) == ["0-first", "1-live", "10-live", "100-live", "0-last"]
    for label in ("0-first", "0-last"):
        assert phases[label]["delivered"] == 0 and phases[label]["dead_endpoints"] == 0
    for label, live in (("1-live", 1), ("10-live", 10), ("100-live", 100)):
        phase = phases[label]
        assert phase["live_endpoints"] == live and phase["dead_endpoints"] == 1
        assert phase["events"] > 0 and phase["delivered"] == phase["events"] * live
        assert phase["receiver"]["received"] == phase["delivered"]
        assert phase["receiver"]["verified"] > 0 and phase["receiver"]["bad_signatures"] == 0
        assert phase["cpu_per_order"]["app_ms"] > 0
    # The endpoint that hangs was sent something at least once over the run.
    assert sum(phases[label]["receiver"]["dead_connections"] for label in phases) > 0
