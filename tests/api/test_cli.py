"""The `kassa` command line, run as a real subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

KASSA = [sys.executable, "-m", "kassa.cli"]


def run_cli(
    *args: str, env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*KASSA, *args],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_keys_create_prints_the_secret_alone_on_the_last_line(database_url: str) -> None:
    env = {"KASSA_DATABASE_URL": database_url}
    done = run_cli("keys", "create", "--role", "analyst", "--name", "reporting", env=env)
    assert done.returncode == 0, done.stderr
    secret = done.stdout.strip().splitlines()[-1]
    assert secret.startswith("kassa_sk_") and " " not in secret
    listed = run_cli("keys", "list", env=env)
    assert "reporting" in listed.stdout and "analyst" in listed.stdout
    assert secret not in listed.stdout  # only a prefix is ever shown

    bad = run_cli("keys", "create", "--role", "superuser", env=env)
    assert bad.returncode == 2
    assert "role must be one of" in bad.stderr


def _wait_for_line(proc: subprocess.Popen[str], prefix: str, timeout: float = 60) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"no line starting {prefix!r}")


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KASSA_")}
    env.update(KASSA_RESERVATION_TTL_S="1", KASSA_RESERVATION_SWEEP_INTERVAL_S="1")
    proc = subprocess.Popen(
        [*KASSA, "demo", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        key = _wait_for_line(proc, "admin key: ")
        staff_password = _wait_for_line(proc, "dashboard password: ")
        url = _wait_for_line(proc, "url: ")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield url, key, staff_password
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert (tmp_path / "kassa-demo.db").exists()


def test_demo_serves_its_catalogue_with_the_key_it_printed(demo: tuple[str, str, str]) -> None:
    url, key, _ = demo
    auth = {"Authorization": f"Bearer {key}"}
    assert httpx.get(url + "/healthz").json() == {"status": "ok"}
    products = httpx.get(url + "/v1/products?limit=100", headers=auth).json()["data"]
    assert len(products) >= 12
    assert sum(p["unique"] for p in products) >= 3
    assert any(p["stock"] is not None and p["stock"] <= 5 for p in products)
    assert httpx.get(url + "/v1/products").status_code == 401
    for doc in ("/docs", "/openapi.json"):
        assert httpx.get(url + doc).status_code == 200


def test_demo_signs_its_admin_in_to_the_dashboard_with_the_password_it_printed(
    demo: tuple[str, str, str],
) -> None:
    url, _, password = demo
    with httpx.Client(base_url=url) as browser:
        form = browser.get("/dashboard/sign-in")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token, form.text
        signed = browser.post(
            "/dashboard/sign-in",
            data={
                "csrf_token": token.group(1),
                "email": "admin@demo.kassa.example",
                "password": password,
            },
        )
        assert signed.status_code == 303, signed.text
        assert signed.headers["location"] == "/dashboard/password"


def test_serve_releases_expired_reservations_in_the_background(
    demo: tuple[str, str, str],
) -> None:
    url, key, _ = demo
    auth = {"Authorization": f"Bearer {key}"}
    order = httpx.post(
        url + "/v1/orders",
        json={
            "email": "a@example.com",
            "currency": "EUR",
            "lines": [{"sku": "VASE-ONE-01", "quantity": 1}],
        },
        headers=auth,
    ).json()
    assert order["status"] == "pending"
    deadline = time.monotonic() + 30  # TTL 1 s, sweep every 1 s: settles within seconds
    while time.monotonic() < deadline:
        if httpx.get(f"{url}/v1/orders/{order['id']}", headers=auth).json()["status"] == "canceled":
            break
        time.sleep(0.3)
    got = httpx.get(f"{url}/v1/orders/{order['id']}", headers=auth).json()
    assert (got["status"], got["cancel_reason"]) == ("canceled", "reservation_expired")
    vase = httpx.get(url + "/v1/products/VASE-ONE-01", headers=auth).json()
    assert vase["status"] == "available"
