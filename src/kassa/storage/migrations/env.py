"""Alembic environment: kassa's metadata, the URL handed over by kassa.storage.migrate."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from alembic import context

# The sandbox's tables live in its package, on the same metadata: import them so the
# migrations see the whole schema.
from kassa.providers.mock import tables as _mock_tables  # noqa: F401
from kassa.storage.database import make_engine
from kassa.storage.tables import ONLY_ON, Base

config = context.config
target_metadata = Base.metadata


def _on(dialect: str) -> Callable[[Any, str | None, str, bool, Any], bool]:
    """Compare an index declared for one dialect only (`ONLY_ON`, see tables.list_indexes)
    with the database only on that dialect."""

    def include(obj: Any, _name: str | None, kind: str, reflected: bool, _other: Any) -> bool:
        only = None if reflected or kind != "index" else obj.info.get(ONLY_ON)
        return only is None or only == dialect

    return include


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=connection.dialect.name == "sqlite",
                compare_type=True,
                include_object=_on(connection.dialect.name),
            )
            with context.begin_transaction():
                if connection.dialect.name == "postgresql":
                    # Several processes may start at once: one migrates, the others wait.
                    connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7361626173)")
                context.run_migrations()
            connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
