"""The ceiling: the least an API on kassa's stack can do per write, served as kassa is.

A FastAPI app with one route, `POST /orders`: a Pydantic body model (an e-mail, a
currency, order lines), ONE SQLAlchemy Core `INSERT ... RETURNING` in one transaction
(psycopg 3 on PostgreSQL; sqlite3 on SQLite, with the pragmas and `BEGIN IMMEDIATE` kassa
uses), answered 201 with a small JSON body. A synchronous endpoint, run in the thread pool
as kassa's are. No authentication, no middleware, no idempotency, no audit: what kassa
costs beyond this is what kassa does.

It is served with the same server as kassa: `kassa.server`'s uvicorn configuration (the
same HTTP protocol class, so the same TCP_NODELAY behaviour, loop and log level) in one
process, or in N processes sharing one socket under uvicorn's supervisor, as
`kassa serve --workers N` runs. Against a kassa without `kassa.server`, it falls back to
what that kassa's `kassa serve` did: `uvicorn.run` with its defaults.

    CEILING_DATABASE_URL=postgresql://... python bench/ceiling.py --port 8200 [--workers 2]

`create_table(url)` makes its table; the benchmark does that before serving, once.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    insert,
)

DATABASE_URL_VARIABLE = "CEILING_DATABASE_URL"
FACTORY = "ceiling:create_app"  # the import string each API process builds the app from
SQLITE_BUSY_TIMEOUT_MS = 30_000

metadata = MetaData()
orders = Table(
    "bench_ceiling",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("email", String(320), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("lines", JSON, nullable=False),
)


class Line(BaseModel):
    sku: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    quantity: Annotated[int, Field(ge=1, le=10_000)]


class OrderIn(BaseModel):
    email: Annotated[str, StringConstraints(min_length=3, max_length=320)]
    currency: Annotated[str, StringConstraints(pattern="^[A-Z]{3}$")]
    lines: Annotated[list[Line], Field(min_length=1, max_length=100)]


def _driver_url(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str) -> Engine:
    """PostgreSQL through psycopg 3 with a plain pool; SQLite with kassa's settings (WAL,
    a busy timeout, synchronous=NORMAL, BEGIN IMMEDIATE), so neither side gets a cheaper
    or dearer database than kassa does."""
    url = _driver_url(url)
    if not url.startswith("sqlite"):
        return create_engine(url, pool_size=10, max_overflow=20)
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def create_table(url: str) -> None:
    engine = make_engine(url)
    try:
        metadata.create_all(engine)
    finally:
        engine.dispose()


def create_app(url: str | None = None) -> FastAPI:
    """The app on `url`, or on CEILING_DATABASE_URL (each API process builds its own)."""
    engine = make_engine(url or os.environ[DATABASE_URL_VARIABLE])
    app = FastAPI(title="ceiling")

    @app.post("/orders", status_code=201)
    def create_order(body: OrderIn) -> dict[str, Any]:
        with engine.begin() as conn:
            new_id = conn.execute(
                insert(orders)
                .values(
                    email=body.email,
                    currency=body.currency,
                    lines=[line.model_dump() for line in body.lines],
                )
                .returning(orders.c.id)
            ).scalar_one()
        return {"id": new_id, "object": "order", "currency": body.currency}

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def serve(host: str, port: int, workers: int, log_level: str) -> None:
    """As `kassa serve` runs kassa: `kassa.server.serve` in this process for one worker,
    else `kassa.server`'s configuration under uvicorn's supervisor on one socket."""
    try:
        from kassa import server
    except ImportError:  # a kassa from before `kassa serve --workers`
        import uvicorn

        app: Any = FACTORY if workers > 1 else create_app()
        uvicorn.run(
            app, host=host, port=port, workers=workers, factory=workers > 1, log_level=log_level
        )
        return
    if workers == 1:
        server.serve(create_app(), host=host, port=port, log_level=log_level)
        return
    from uvicorn.supervisors import Multiprocess

    settings = server.config(FACTORY, host=host, port=port, workers=workers, log_level=log_level)
    listener = settings.bind_socket()
    try:
        Multiprocess(settings, sockets=[listener]).run()
    finally:
        listener.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8200)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    # The API processes import this module by name (FACTORY): put its folder on their path.
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
    serve(args.host, args.port, args.workers, args.log_level)


if __name__ == "__main__":
    main()
