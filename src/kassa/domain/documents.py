"""Invoice and credit-note rules: series, numbers, gap checks, included tax. Pure.

A document number is `<series>-<year>-<sequence>`, e.g. `INV-2026-000001`. Sequences run
1, 2, 3 … per series and calendar year (UTC) with no gap and no repeat; the storage layer
allocates them from a counter row in the same transaction as the document, so a number
exists if and only if its document does.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Series(StrEnum):
    INVOICE = "INV"
    CREDIT_NOTE = "CN"


SEQUENCE_DIGITS = 6
_NUMBER = re.compile(r"^(INV|CN)-(\d{4})-(\d{6,})$")


def format_number(series: Series, year: int, sequence: int) -> str:
    if sequence < 1:
        raise ValueError(f"document sequences start at 1, got {sequence}")
    if not 1 <= year <= 9999:
        raise ValueError(f"year out of range: {year}")
    return f"{series.value}-{year:04d}-{sequence:0{SEQUENCE_DIGITS}d}"


def parse_number(number: str) -> tuple[Series, int, int]:
    match = _NUMBER.match(number)
    if match is None:
        raise ValueError(f"not a document number: {number!r}")
    return Series(match.group(1)), int(match.group(2)), int(match.group(3))


@dataclass(frozen=True, slots=True)
class SequenceProblems:
    """What is wrong with one series-year's issued sequences."""

    missing: tuple[int, ...]
    duplicated: tuple[int, ...]
    beyond_counter: tuple[int, ...]

    @property
    def clean(self) -> bool:
        return not (self.missing or self.duplicated or self.beyond_counter)


def sequence_problems(issued: Iterable[int], counter: int) -> SequenceProblems:
    """Compare issued sequences against the counter's last value: every number from 1 to
    `counter` must be issued exactly once, and none above it."""
    counts = Counter(issued)
    return SequenceProblems(
        missing=tuple(n for n in range(1, counter + 1) if n not in counts),
        duplicated=tuple(sorted(n for n, c in counts.items() if c > 1)),
        beyond_counter=tuple(sorted(n for n in counts if n > counter or n < 1)),
    )


BASIS_POINTS = 10_000


def included_tax(gross: int, rate_bp: int) -> int:
    """The tax contained in a gross (tax-inclusive) amount at `rate_bp` basis points,
    rounded half up to the minor unit: gross * rate / (1 + rate), in integers only."""
    if rate_bp < 0:
        raise ValueError(f"tax rate must not be negative, got {rate_bp} bp")
    if gross < 0:
        raise ValueError(f"gross amount must not be negative, got {gross}")
    numerator = 2 * gross * rate_bp
    denominator = 2 * (BASIS_POINTS + rate_bp)
    return (numerator + denominator // 2) // denominator
