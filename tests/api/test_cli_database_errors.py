"""The CLI on a database it cannot use (api-contract.md, Operations v1.1): an unmigrated
database, a URL naming nothing, a refused connection, a missing database. Each command
says in one line what is wrong and what to do, on stderr, and exits 1; never a
traceback, never a worker looping on errors, never a server that starts anyway.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import PG_ADMIN_URL, free_port

KASSA = [sys.executable, "-m", "kassa.cli"]
PG_BASE = PG_ADMIN_URL.rsplit("/", 1)[0]

# What a database that cannot be used for each reason must make the CLI say.
MIGRATE = "kassa migrate"
CHECK_URL = "KASSA_DATABASE_URL"

COMMANDS = {
    "check": ["check", "--no-providers"],
    "jobs": ["jobs"],
    "keys list": ["keys", "list"],
    "worker": ["worker"],
    "serve --no-migrate": ["serve", "--no-migrate", "--no-worker"],
}


def run_cli(
    *args: str, url: str, cwd: Path, extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KASSA_")}
    return subprocess.run(
        [*KASSA, *args],
        env={**env, "KASSA_DATABASE_URL": url, **(extra or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_one_line_error(done: subprocess.CompletedProcess[str], fix: str) -> None:
    assert done.returncode == 1, (done.returncode, done.stderr[-3000:])
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 2, done.stderr
    assert lines[-1].startswith("error: "), done.stderr
    assert fix in done.stderr, done.stderr


@pytest.fixture(scope="module")
def empty_postgres() -> Iterator[str]:
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL at {PG_ADMIN_URL} is unreachable: {exc}")
    name = f"kassa_empty_{uuid.uuid4().hex[:8]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"{PG_BASE}/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def unmigrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        path = tmp_path / "empty.db"
        path.touch()
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("empty_postgres")
    return url


@pytest.mark.parametrize("command", list(COMMANDS))
def test_an_unmigrated_database_says_run_kassa_migrate(
    unmigrated_url: str, command: str, tmp_path: Path
) -> None:
    args = COMMANDS[command]
    if command.startswith("serve"):
        args = [*args, "--port", str(free_port())]
    assert_one_line_error(run_cli(*args, url=unmigrated_url, cwd=tmp_path), MIGRATE)


BAD_URLS = {
    "unknown scheme": "foo://x",
    "not a URL": "nonsense",
    "refused": "postgresql://postgres@127.0.0.1:1/test",
    "missing database": f"{PG_BASE}/kassa_no_such_database_{uuid.uuid4().hex[:6]}",
    "missing SQLite directory": "sqlite:////nonexistent/kassa/kassa.db",
}


# `jobs` and `keys list` open the database the way `check` does; `worker`, `serve` and
# `migrate` each have their own way in.
@pytest.mark.parametrize("command", ["check", "worker", "serve --no-migrate", "migrate"])
@pytest.mark.parametrize("case", list(BAD_URLS))
def test_a_database_url_kassa_cannot_use_says_check_the_url(
    case: str, command: str, tmp_path: Path
) -> None:
    args = COMMANDS.get(command, [command])
    if command.startswith("serve"):
        args = [*args, "--port", str(free_port())]
    done = run_cli(*args, url=BAD_URLS[case], cwd=tmp_path)
    assert_one_line_error(done, CHECK_URL)


def test_serve_with_migrations_on_a_refused_database_exits_1(tmp_path: Path) -> None:
    done = run_cli(
        "serve", "--no-worker", "--port", str(free_port()), url=BAD_URLS["refused"], cwd=tmp_path
    )
    assert_one_line_error(done, CHECK_URL)


def test_a_migrated_database_still_works(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kassa.db'}"
    assert run_cli("migrate", url=url, cwd=tmp_path).returncode == 0
    done = run_cli("keys", "list", url=url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert run_cli("jobs", url=url, cwd=tmp_path).returncode == 0


@pytest.mark.parametrize("command", ["check", "worker", "migrate"])
def test_a_setting_kassa_cannot_use_says_which(command: str, tmp_path: Path) -> None:
    done = run_cli(
        *COMMANDS.get(command, [command]),
        url=f"sqlite:///{tmp_path / 'kassa.db'}",
        cwd=tmp_path,
        extra={"KASSA_RESERVATION_TTL_S": "half an hour"},
    )
    assert_one_line_error(done, "KASSA_RESERVATION_TTL_S must be an integer, got 'half an hour'")
