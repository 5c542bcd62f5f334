"""CSV exports stream (api-contract.md: CSV exports): memory does not grow with the row
count, the rows are one snapshot however long the download takes, and a client that goes
away mid-download still ends the snapshot and leaves its audit record (`completed:
false`).

These drive the ASGI application directly, as a server does: the test client would
collect the whole body in memory before returning it, which is what is being measured.
"""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import insert, select

from kassa.api.app import create_app
from kassa.bootstrap import Kassa
from kassa.services.context import RequestContext
from kassa.services.export_sources import BATCH_ROWS
from kassa.storage.database import table_of
from kassa.storage.tables import AuditRecord, Order
from tests.conftest import Keys

Message = dict[str, Any]


def insert_orders(kassa: Kassa, first: int, count: int, at: datetime) -> None:
    """`count` paid orders created at `at`, with a bulk Core insert (not the API)."""
    with kassa.db.transaction() as session:
        connection = session.connection()  # Core's executemany, not the ORM's bulk insert
        for start in range(first, first + count, 10_000):
            connection.execute(
                insert(table_of(Order)),
                [
                    {
                        "id": f"ord_{n:024x}",
                        "number": f"B-{n:09d}",
                        "status": "paid",
                        "currency": "EUR",
                        "subtotal": 1999,
                        "total": 1999,
                        "amount_paid": 1999,
                        "amount_refunded": 0,
                        "email": f"buyer{n}@example.com",
                        "metadata": {},
                        "stock_shortage": False,
                        "disputed": False,
                        "created_at": at,
                        "paid_at": at,
                    }
                    for n in range(start, min(start + 10_000, first + count))
                ],
            )


@dataclass
class Streamed:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    chunks: int = 0
    size: int = 0
    lines: int = 0
    error: BaseException | None = None


def stream(
    kassa: Kassa,
    secret: str,
    path: str,
    params: dict[str, str],
    *,
    spec_version: str = "2.4",
    on_chunk: Callable[[Streamed], Awaitable[None]] | None = None,
    receive: Callable[[], Awaitable[Message]] | None = None,
) -> Streamed:
    """GET `path` from the application as an ASGI server would, keeping nothing of the
    body but its size and line count."""
    app = create_app(kassa)
    seen = Streamed()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": spec_version},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": urlencode(params).encode(),
        "headers": [(b"host", b"kassa.test"), (b"authorization", f"Bearer {secret}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("kassa.test", 80),
        "state": {},
    }

    async def idle_receive() -> Message:
        await asyncio.Event().wait()  # the client never hangs up
        raise AssertionError

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            seen.status = message["status"]
            seen.headers = {k.decode(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body" and message.get("body"):
            seen.chunks += 1
            seen.size += len(message["body"])
            seen.lines += message["body"].count(b"\r\n")
            if on_chunk is not None:
                await on_chunk(seen)

    async def run() -> None:
        try:
            await app(scope, receive or idle_receive, send)
        except Exception as exc:  # a client that went away, as the server would see it
            seen.error = exc

    asyncio.run(run())
    return seen


def export_audit(kassa: Kassa) -> list[AuditRecord]:
    with kassa.db.transaction(read_only=True) as session:
        return list(
            session.scalars(
                select(AuditRecord)
                .where(AuditRecord.action.like("export.%"))
                .order_by(AuditRecord.pk)
            )
        )


def no_connection_held(kassa: Kassa) -> bool:
    return int(kassa.db.engine.pool.checkedout()) == 0  # type: ignore[attr-defined]


def peak_while_streaming(kassa: Kassa, secret: str) -> tuple[Streamed, int]:
    """The export of today's orders through the application, and the peak of the memory
    Python allocated meanwhile (every thread), above what was allocated before."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        seen = stream(kassa, secret, "/v1/exports/orders.csv", {"window": "today"})
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    return seen, peak


def test_memory_stays_flat_from_10_000_to_100_000_orders(
    kassa: Kassa, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    now = kassa.clock()
    insert_orders(kassa, 0, 100, now)
    stream(kassa, keys.analyst, "/v1/exports/orders.csv", {"window": "today"})  # warm-up
    insert_orders(kassa, 100, 9_900, now)
    small, small_peak = peak_while_streaming(kassa, keys.analyst)
    insert_orders(kassa, 10_000, 90_000, now)
    large, large_peak = peak_while_streaming(kassa, keys.analyst)

    assert (small.status, large.status) == (200, 200)
    assert (small.lines, large.lines) == (10_001, 100_001)  # the header, then every row
    assert large.chunks >= 100_000 // BATCH_ROWS  # it came in pieces, not as one body
    with capsys.disabled():
        print(
            f"\nexport memory ({kassa.db.engine.dialect.name}): 10,000 rows "
            f"{small.size / 1e6:.1f} MB of CSV, peak {small_peak / 1e6:.2f} MB traced; "
            f"100,000 rows {large.size / 1e6:.1f} MB of CSV, peak {large_peak / 1e6:.2f} MB"
        )
    assert large_peak < 1.5 * small_peak, (small_peak, large_peak)
    assert large_peak < 8_000_000, large_peak  # a few batches, never the file
    assert large.size > 3 * large_peak  # the body is many times what was ever held
    records = export_audit(kassa)
    assert [r.after["rows"] for r in records if r.after] == [100, 10_000, 100_000]


def test_an_export_is_one_snapshot_however_long_it_takes(kassa: Kassa, keys: Keys) -> None:
    """Orders created while an export streams are not in it, nor half in it."""
    now = kassa.clock()
    insert_orders(kassa, 0, 2_500, now)
    written = False

    async def write_meanwhile(seen: Streamed) -> None:
        nonlocal written
        if not written:  # after the first batch has gone out, from another connection
            written = True
            await asyncio.to_thread(insert_orders, kassa, 2_500, 1_000, now)

    seen = stream(
        kassa, keys.analyst, "/v1/exports/orders.csv", {"window": "today"}, on_chunk=write_meanwhile
    )
    assert written and seen.status == 200
    assert seen.lines == 2_501
    with kassa.db.transaction(read_only=True) as session:
        assert len(session.scalars(select(Order.pk)).all()) == 3_500
    after = stream(kassa, keys.analyst, "/v1/exports/orders.csv", {"window": "today"})
    assert after.lines == 3_501


@pytest.mark.parametrize("spec_version", ["2.4", "2.3"])
def test_a_client_that_goes_away_ends_the_snapshot_and_is_audited(
    kassa: Kassa, keys: Keys, spec_version: str
) -> None:
    """ASGI 2.4 servers report the gone client by failing `send`; older ones by an
    `http.disconnect` message, upon which Starlette cancels the stream."""
    insert_orders(kassa, 0, 5 * BATCH_ROWS, kassa.clock())
    gone = asyncio.Event() if spec_version == "2.3" else None

    async def hang_up(seen: Streamed) -> None:
        if seen.chunks == 2:
            if gone is None:
                raise OSError("connection reset by peer")
            gone.set()
            await asyncio.sleep(0.5)  # the disconnect cancels this send

    async def receive() -> Message:
        assert gone is not None
        await gone.wait()
        return {"type": "http.disconnect"}

    seen = stream(
        kassa,
        keys.analyst,
        "/v1/exports/orders.csv",
        {"window": "today"},
        spec_version=spec_version,
        on_chunk=hang_up,
        receive=receive if gone is not None else None,
    )
    assert seen.status == 200 and seen.chunks == 2
    assert no_connection_held(kassa)
    (record,) = export_audit(kassa)
    assert record.actor_key_id == keys.ids["analyst"]
    assert record.after is not None and record.after["completed"] is False
    assert 2 * BATCH_ROWS <= record.after["rows"] < 5 * BATCH_ROWS


def test_an_export_read_to_its_end_holds_no_connection(kassa: Kassa, keys: Keys) -> None:
    insert_orders(kassa, 0, 1_500, kassa.clock())
    seen = stream(kassa, keys.analyst, "/v1/exports/orders.csv", {"window": "today"})
    assert (seen.status, seen.lines, seen.error) == (200, 1_501, None)
    assert no_connection_held(kassa)
    (record,) = export_audit(kassa)
    assert record.after == {
        "filters": {
            "window": "today",
            "from": kassa.clock().date().isoformat(),
            "to": kassa.clock().date().isoformat(),
            "timezone": "UTC",
        },
        "rows": 1_500,
        "completed": True,
    }


def test_the_service_stream_can_be_abandoned_between_batches(kassa: Kassa) -> None:
    """What the CLI does when its output fails: close after the first batch."""
    insert_orders(kassa, 0, 3 * BATCH_ROWS, datetime.now(UTC))
    cli = RequestContext.system("cli")
    with kassa.exports.open(cli, "orders", window="today") as export:
        assert export.total() == 3 * BATCH_ROWS
        first = next(iter(export))
        assert first.count(b"\r\n") == BATCH_ROWS + 1
    assert no_connection_held(kassa)
    (record,) = export_audit(kassa)
    assert (record.actor_key_id, record.after) == (
        "cli",
        {"filters": export.filters, "rows": BATCH_ROWS, "completed": False},
    )
    export.close()  # closing again writes nothing more
    assert len(export_audit(kassa)) == 1
