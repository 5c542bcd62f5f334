"""How the benchmarks start kassa (bench/harness.py) and the scaling layouts."""

from __future__ import annotations

import harness
import pytest
from harness import KassaLaunch, describe_commands, kassa_commands
from suite import parse_layout


def test_layouts() -> None:
    assert parse_layout("2") == KassaLaunch(workers=2)
    assert parse_layout("2+1") == KassaLaunch(workers=2, embedded_worker=False, worker_procs=1)
    for bad in ("0", "2+0", "x", "1+"):
        with pytest.raises(ValueError, match="not a layout"):
            parse_layout(bad)
    assert parse_layout("2+2").label() == "serve --workers 2 --no-worker + 2 kassa worker"


def test_kassa_serve_with_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "serve_takes_workers", lambda: True)
    server, *workers = kassa_commands(
        KassaLaunch(workers=2, embedded_worker=False, worker_procs=2, log_level="warning"), 8123
    )
    assert server[server.index("serve") :] == [
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "8123",
        "--workers",
        "2",
        "--no-worker",
        "--log-level",
        "warning",
    ]
    assert [w[-1] for w in workers] == ["worker", "worker"]
    (only,) = kassa_commands(KassaLaunch(), 8123)
    assert only[only.index("serve") :] == [
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "8123",
        "--workers",
        "1",
    ]


def test_an_older_kassa_without_serve_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "serve_takes_workers", lambda: False)
    (single,) = kassa_commands(KassaLaunch(), 8123)
    assert single[single.index("serve") :] == ["serve", "--host", "127.0.0.1", "--port", "8123"]
    server, stand_in = kassa_commands(KassaLaunch(workers=2), 8123)
    assert "uvicorn" in server and server[server.index("--workers") + 1] == "2"
    assert stand_in[-1] == "worker"  # the embedded worker's stand-in
    (bare,) = kassa_commands(KassaLaunch(workers=2, embedded_worker=False), 8123)
    assert "uvicorn" in bare


def test_the_report_names_what_ran(monkeypatch: pytest.MonkeyPatch) -> None:
    layout = KassaLaunch(workers=2, embedded_worker=False, worker_procs=2, log_level="warning")
    monkeypatch.setattr(harness, "serve_takes_workers", lambda: True)
    assert describe_commands(kassa_commands(layout, 1)) == (
        "kassa serve --workers 2 --no-worker + 2 kassa worker"
    )
    monkeypatch.setattr(harness, "serve_takes_workers", lambda: False)
    assert describe_commands(kassa_commands(KassaLaunch(workers=2), 1)) == (
        "uvicorn --workers 2 + 1 kassa worker"
    )
    assert describe_commands(kassa_commands(KassaLaunch(), 1)) == "kassa serve"
