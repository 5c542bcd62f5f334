"""`kassa serve` as a user runs it, in a process of its own, for the reliability tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]


def start_serve(
    log_dir: Path, env: dict[str, str], *args: str
) -> tuple[subprocess.Popen[bytes], int, Path]:
    """`kassa serve --port <free> ARGS` with exactly `env`, its stderr in a log file, in a
    session of its own (so `stop_all` takes down every process it started); returns the
    process, its port and its log once /healthz answers. A server that exits or does not
    answer within 60 s is killed and fails the test with its log."""
    port = free_port()
    log = log_dir / f"serve-{port}.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kassa.cli", "serve", "--port", str(port), *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=sink,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited {proc.returncode}: {log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc, port, log
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop_all([proc])
    raise AssertionError(f"serve did not answer in 60 s: {log.read_text()}")


def stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGKILL each still-running server's whole session (its API processes too)."""
    for proc in processes:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
