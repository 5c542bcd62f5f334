"""`python -m kassa.storage.migrate_check`: models and migrations agree, on SQLite and
PostgreSQL, each checked in a fresh throw-away database."""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from pathlib import Path

import psycopg

from kassa.storage.migrate import check

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        check(f"sqlite:///{Path(tmp) / 'check.db'}")
        print("sqlite: models and migrations agree")
    admin_url = os.environ.get("KASSA_TEST_POSTGRES_URL", DEFAULT_PG)
    name = f"kassa_migcheck_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        base = admin_url.rsplit("/", 1)[0]
        check(f"{base}/{name}")
        print("postgresql: models and migrations agree")
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    sys.exit(main())
