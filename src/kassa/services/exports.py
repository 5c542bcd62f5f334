"""Audited CSV exports: the registry of exports, their column contract, and one export's
run from its snapshot to its audit record.

The columns of every export are fixed by `exports_contract.json` (in this package, served
at `GET /v1/exports/contract`): a column is only ever added at the end, never renamed,
moved or dropped, so a bookkeeper's spreadsheet keeps working. A source is registered
under a name the contract lists, and a table export whose query's columns differ from the
contract is refused when it is registered (at start-up), not found in a file later.

An export reads everything in ONE snapshot (`Database.snapshot()`: REPEATABLE READ on
PostgreSQL), so its rows are one consistent state however long the download takes, and
streams them a batch at a time (memory does not grow with the row count).

The audit record: one per export, `export.<name>`, written when the export is closed,
in a transaction of its own, because only then is the row count known. It says who
(`actor_key_id`), which file (`subject_id`, e.g. `kassa-orders-2026-11-01-2026-11-30.csv`),
the filters, how many rows were handed out and whether the export `completed` (false: the
client went away, or the output or the database failed, part-way). An export is audited
once it has read from the database (a request refused before that, 4xx, or one the
database could not answer, 503, exported nothing). What this cannot record: an export
cut off by the death of the process itself (kill -9, power loss) leaves no record, since
the audit log is append-only and the record is written at the end.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import ExitStack
from datetime import datetime, tzinfo
from importlib import resources
from types import TracebackType
from typing import Any

from kassa.domain.calendar import Period, period_problem, requested_period
from kassa.domain.errors import conflict, not_found
from kassa.services import audit
from kassa.services.context import Clock, RequestContext
from kassa.services.csv_cells import CsvEncoder
from kassa.services.export_sources import TABLE_EXPORTS, ExportSource, TableExport
from kassa.storage.database import Database

CONTRACT_FILE = "exports_contract.json"
# Exports one process streams at once: each holds a pooled connection and a snapshot for
# as long as its client reads, so many slow downloads must not take the pool from the API.
MAX_RUNNING = 4


def load_contract() -> dict[str, tuple[str, ...]]:
    """The column contract of every export, from the file kept in this package."""
    text = resources.files("kassa.services").joinpath(CONTRACT_FILE).read_text("utf-8")
    raw = json.loads(text)
    return {str(name): tuple(str(c) for c in columns) for name, columns in raw.items()}


CONTRACT: Mapping[str, tuple[str, ...]] = load_contract()


class Exports:
    """The exports this kassa offers, and how to run one."""

    def __init__(
        self, db: Database, clock: Clock, zone: tzinfo, *, max_running: int = MAX_RUNNING
    ) -> None:
        self._db = db
        self._clock = clock
        self.zone = zone
        self._sources: dict[str, ExportSource] = {}
        self._max_running = max_running
        self._running = threading.BoundedSemaphore(max_running)
        for name, source in TABLE_EXPORTS.items():
            self.register(name, source)

    def register(self, name: str, source: ExportSource) -> None:
        """Offer `source` as the export `name`, whose columns the contract fixes; e.g. the
        KPI daily series: `exports.register("kpis", RowsExport(kpis.daily_rows))` with
        rows of (date, currency, orders_paid, gross_sales, refunds, net_sales)."""
        if name not in CONTRACT:
            raise ValueError(f"export {name!r} is not in {CONTRACT_FILE}: add its columns there")
        if isinstance(source, TableExport) and tuple(source.columns) != CONTRACT[name]:
            raise ValueError(
                f"export {name!r} selects {source.columns}, the contract says "
                f"{list(CONTRACT[name])}"
            )
        self._sources[name] = source

    def contract(self) -> dict[str, list[str]]:
        return {name: list(columns) for name, columns in CONTRACT.items()}

    def available(self) -> list[str]:
        return sorted(self._sources)

    def timed(self, name: str) -> bool:
        """Whether the export `name` takes a period (the catalogue exports are as of now);
        False for a name that is not offered."""
        source = self._sources.get(name)
        return source is not None and source.timed

    def open(
        self,
        ctx: RequestContext,
        name: str,
        *,
        window: str | None = None,
        from_: str | None = None,
        to: str | None = None,
    ) -> CsvExport:
        """Start the export `name`: refuse an unknown name (404 `export_not_found`) or a
        bad period (422 `invalid_period`) before anything is read, then open its snapshot
        and read its first batch. The caller iterates the export for its CSV bytes and
        must `close()` it (a `with` block), which writes the audit record."""
        source = self._sources.get(name)
        if source is None:
            raise not_found(
                "export_not_found",
                f"no export named {name!r}; available: {', '.join(self.available())}",
            )
        now = self._clock()
        period = self._period(source, name, window, from_, to, now)
        if period is None:  # the catalogue as it is today
            today = now.astimezone(self.zone).date().isoformat()
            filename, filters = f"kassa-{name}-{today}-{today}.csv", {}
        else:
            filename = f"kassa-{name}-{period.first}-{period.last}.csv"
            filters = period.describe()
        if not self._running.acquire(blocking=False):
            raise conflict(
                "exports_busy",
                f"{self._max_running} exports are already running here; retry when one has "
                "finished",
            )
        return CsvExport(
            self._db,
            self._clock,
            ctx,
            name=name,
            columns=CONTRACT[name],
            source=source,
            period=period,
            filename=filename,
            filters=filters,
            on_close=self._running.release,
        )

    def _period(
        self,
        source: ExportSource,
        name: str,
        window: str | None,
        from_: str | None,
        to: str | None,
        now: datetime,
    ) -> Period | None:
        if source.timed:
            return requested_period(window=window, from_=from_, to=to, now=now, zone=self.zone)
        if window is not None or from_ is not None or to is not None:
            given = "window" if window is not None else "from" if from_ is not None else "to"
            raise period_problem(
                given, f"the {name} export is the catalogue as it is now: it takes no period"
            )
        return None


class CsvExport:
    """One export being streamed. Iterate it for its CSV as UTF-8 byte chunks (the header
    row, then a chunk per batch of rows); `close()` it when done or abandoned."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        ctx: RequestContext,
        *,
        name: str,
        columns: tuple[str, ...],
        source: ExportSource,
        period: Period | None,
        filename: str,
        filters: dict[str, Any],
        on_close: Callable[[], None],
    ) -> None:
        self.name = name
        self.columns = columns
        self.filename = filename
        self.filters = filters
        self.period = period
        self.rows = 0  # rows handed out so far
        self.completed = False  # every row was handed out
        self._db = db
        self._clock = clock
        self._ctx = ctx
        self._source = source
        self._on_close = on_close
        self._closed = False
        self._stack = ExitStack()
        try:
            self._session = self._stack.enter_context(db.snapshot())
            self._chunks = self._generate()
            # Read the first batch now: a database that cannot answer fails the request
            # (503) before any byte of a 200 has gone out.
            self._first: bytes | None = next(self._chunks)
        except BaseException as exc:
            try:  # the snapshot sees the failure: it rolls back, and names an outage as such
                if not self._stack.__exit__(type(exc), exc, exc.__traceback__):
                    raise
            finally:
                on_close()

    def __enter__(self) -> CsvExport:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[bytes]:
        first, self._first = self._first, None
        if first is not None:
            yield first
        yield from self._chunks

    def total(self) -> int | None:
        """How many rows the export holds (in its snapshot), if that is cheap to know."""
        return self._source.count(self._session, self.period)

    def _generate(self) -> Generator[bytes, None, None]:
        encoder = CsvEncoder(self.columns)
        head = encoder.header()
        batches = self._source.batches(self._session, self.period)
        try:
            for batch in batches:
                body = encoder.encode(batch)
                self.rows += len(batch)
                yield head + body
                head = b""
            if head:  # no rows: the header alone
                yield head
            self.completed = True
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()

    def close(self) -> None:
        """End the snapshot and write the export's audit record (once; later calls do
        nothing)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._chunks.close()
            self._stack.close()
        finally:
            self._on_close()
            self._record()

    def _record(self) -> None:
        with self._db.transaction() as session:
            audit.record(
                session,
                self._ctx,
                at=self._clock(),
                action=f"export.{self.name}",
                subject=self.filename,
                after={"filters": self.filters, "rows": self.rows, "completed": self.completed},
            )
