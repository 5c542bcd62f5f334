"""Alembic, driven from code: `kassa migrate` and the models-vs-migrations check."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from kassa.config import normalize_database_url

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation would choke on '%' in passwords.
    cfg.set_main_option("sqlalchemy.url", normalize_database_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def check(url: str) -> None:
    """Raise if the models hold anything the migrations do not (upgrades first)."""
    cfg = alembic_config(url)
    command.upgrade(cfg, "head")
    command.check(cfg)


@lru_cache(maxsize=1)
def revisions() -> tuple[frozenset[str], frozenset[str]]:
    """The head revision(s) of kassa's migrations, and every revision they know."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return frozenset(script.get_heads()), frozenset(r.revision for r in script.walk_revisions())
