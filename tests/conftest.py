"""Shared fixtures. Every test that asks for `database_url` (directly or through `kassa`,
`client`, `live_server`) runs twice: on SQLite and on a real PostgreSQL.

PostgreSQL runs get a fresh database for the session (created, migrated, dropped) and
empty tables for each test. Under CI=true an unreachable PostgreSQL fails the run; on a
developer's machine it is skipped with a loud reason.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from kassa.api.app import create_app
from kassa.bootstrap import Kassa
from kassa.config import Settings
from kassa.providers.mock import tables as _mock_tables  # noqa: F401  (the whole schema)
from kassa.services.context import RequestContext
from kassa.storage.migrate import upgrade
from kassa.storage.tables import Base

PG_ADMIN_URL = os.environ.get(
    "KASSA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
DATABASES = ["sqlite", "postgresql"]


# -- databases ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "kassa.db"
    upgrade(f"sqlite:///{path}")
    return path


@contextmanager
def _fresh_pg_database(prefix: str) -> Iterator[str]:
    """A new, migrated PostgreSQL database, dropped afterwards (connections allowed again
    first, in case a test took it away). Unreachable PostgreSQL: skipped, or failed in CI."""
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL at {PG_ADMIN_URL} is unreachable: {exc}"
        if IN_CI:
            pytest.fail(message + " (CI=true: PostgreSQL tests must run)")
        pytest.skip(message)
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    upgrade(url)
    try:
        yield url
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    with _fresh_pg_database("kassa_test") as url:
        yield url


@pytest.fixture
def own_pg_database() -> Iterator[str]:
    """A PostgreSQL database of this test's own, for tests that take it away from the
    processes under test (`allow_connections`)."""
    with _fresh_pg_database("kassa_own") as url:
        yield url


def allow_connections(url: str, allowed: bool) -> None:
    """Let the database at `url` take connections again, or refuse new ones and cut off the
    open ones (a database outage, as clients see it)."""
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allowed).lower()}')
        if not allowed:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )


def _truncate_postgres(url: str) -> None:
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        target = tmp_path / "kassa.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), target)
        return f"sqlite:///{target}"
    url: str = request.getfixturevalue("pg_database")
    _truncate_postgres(url)
    return url


@pytest.fixture
def is_postgres(database_url: str) -> bool:
    return database_url.startswith("postgres")


# -- the application ----------------------------------------------------------------------


@dataclass
class FakeClock:
    """A clock tests move by hand; starts at the real current time."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, reservation_ttl_s=1800)


@dataclass
class Sleeps:
    """Stands in for time.sleep: records each delay and moves the fake clock by it."""

    clock: FakeClock
    seconds: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)
        self.clock.advance(seconds)


@pytest.fixture
def sleeps(clock: FakeClock) -> Sleeps:
    return Sleeps(clock)


@pytest.fixture
def kassa(settings: Settings, clock: FakeClock, sleeps: Sleeps) -> Iterator[Kassa]:
    core = Kassa(settings, clock=clock, sleep=sleeps)
    yield core
    core.close()


@pytest.fixture
def system() -> RequestContext:
    return RequestContext.system("test")


@dataclass
class Keys:
    """One secret per role, plus a second storefront key."""

    admin: str
    ops: str
    analyst: str
    storefront: str
    other_storefront: str
    ids: dict[str, str]

    def headers(self, role: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {getattr(self, role)}", **extra}


def make_keys(core: Kassa) -> Keys:
    """One key per role, plus a second storefront key, in `core`'s database."""
    secrets: dict[str, str] = {}
    ids: dict[str, str] = {}
    for name, role in [
        ("admin", "admin"),
        ("ops", "ops"),
        ("analyst", "analyst"),
        ("storefront", "storefront"),
        ("other_storefront", "storefront"),
    ]:
        view, secret = core.api_keys.create(RequestContext.system("test"), role, name)
        secrets[name] = secret
        ids[name] = view.id
    return Keys(ids=ids, **secrets)


@pytest.fixture
def keys(kassa: Kassa) -> Keys:
    return make_keys(kassa)


@pytest.fixture
def client(kassa: Kassa) -> Iterator[TestClient]:
    with TestClient(create_app(kassa)) as test_client:
        yield test_client


# -- a real server in other processes -----------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen[bytes]


def start_server(database_url: str, workers: int = 2, **env: str) -> LiveServer:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "kassa.api.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
        ],
        env={**os.environ, "KASSA_DATABASE_URL": database_url, **env},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return LiveServer(url, proc)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start in 30 s")


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture
def live_server(database_url: str, keys: Keys) -> Iterator[LiveServer]:
    """The API served by uvicorn with two worker processes on the test database."""
    server = start_server(database_url)
    try:
        yield server
    finally:
        stop_server(server)
