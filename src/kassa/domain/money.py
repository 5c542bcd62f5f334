"""Money: an integer amount of a currency's minor unit plus an ISO 4217 code.

Exponents (JPY 0, EUR 2, BHD 3, ...) come from Babel's copy of the CLDR currency data,
so they follow the maintained standard rather than a hand-written table. There is no
float anywhere: amounts are `int`, conversions to major units go through `Decimal`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cache

from babel.numbers import format_currency, get_currency_precision, list_currencies

from kassa.domain.errors import DomainError, FieldProblem, invalid

# The largest amount kassa stores anywhere (10^15 minor units), far inside a signed 64-bit
# integer, so that sums of a few such amounts cannot overflow a BIGINT column either.
MAX_AMOUNT = 10**15


class CurrencyMismatch(DomainError):
    def __init__(self, left: str, right: str) -> None:
        super().__init__("currency_mismatch", f"cannot combine {left} with {right}")


# ISO 4217 gives codes starting with "X" to things that are not any country's money: the
# precious metals (XAU gold, XAG silver, XPT platinum, XPD palladium), the IMF's SDR (XDR),
# the European bond-market units (XBA, XBB, XBC, XBD), the SUCRE (XSU), the ADB unit of
# account (XUA), the testing code (XTS), "no currency" (XXX), and withdrawn units (XEU,
# XFO, XFU, XRE). Nobody pays a shop in them, so kassa refuses them all. The X codes that
# are money are the currency unions' shared currencies, listed here:
X_CURRENCIES = frozenset({"XAF", "XOF", "XCD", "XCG", "XPF"})


@cache
def _iso_codes() -> frozenset[str]:
    return frozenset(list_currencies())


@cache
def _known_currencies() -> frozenset[str]:
    return frozenset(c for c in _iso_codes() if not c.startswith("X") or c in X_CURRENCIES)


def normalize_currency(code: str, field: tuple[str | int, ...] = ("body", "currency")) -> str:
    """Upper-case and validate an ISO 4217 code of money (see `X_CURRENCIES`); raises
    `unknown_currency` naming `field`."""
    upper = code.strip().upper()
    if len(upper) != 3 or not upper.isalpha() or upper not in _known_currencies():
        message = (
            f"{code!r} is an ISO 4217 code for something that is not money"
            if upper in _iso_codes()
            else f"{code!r} is not an ISO 4217 currency code"
        )
        raise invalid("unknown_currency", message, FieldProblem(field, message))
    return upper


def is_currency(code: str) -> bool:
    try:
        normalize_currency(code)
    except DomainError:
        return False
    return True


def currency_exponent(code: str) -> int:
    """Number of minor-unit digits: 0 for JPY, 2 for EUR, 3 for BHD."""
    return int(get_currency_precision(normalize_currency(code)))


def _check_amount(amount: object) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError(f"money amounts are int minor units, got {type(amount).__name__}")
    return amount


@dataclass(frozen=True, slots=True, order=False)
class Money:
    amount: int
    currency: str

    def __post_init__(self) -> None:
        _check_amount(self.amount)
        object.__setattr__(self, "currency", normalize_currency(self.currency))

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    def _same(self, other: Money) -> None:
        if self.currency != other.currency:
            raise CurrencyMismatch(self.currency, other.currency)

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.amount <= other.amount

    def __gt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount > other.amount

    def __ge__(self, other: Money) -> bool:
        self._same(other)
        return self.amount >= other.amount

    def times(self, quantity: int) -> Money:
        """Multiply by a whole quantity (a line's unit price times its quantity)."""
        return Money(self.amount * _check_amount(quantity), self.currency)

    @property
    def is_zero(self) -> bool:
        return self.amount == 0

    def allocate(self, weights: Sequence[int]) -> list[Money]:
        """Split into parts proportional to `weights`, losing and inventing nothing.

        Each part first gets the floor of its exact share; the minor units left over
        go one each to the parts with the largest fractional remainders, ties to the
        earlier part. The parts always sum to `self`.
        """
        if not weights:
            raise ValueError("allocate needs at least one weight")
        if any(_check_amount(w) < 0 for w in weights):
            raise ValueError("weights must be non-negative")
        total = sum(weights)
        if total == 0:
            raise ValueError("weights must not all be zero")
        sign = -1 if self.amount < 0 else 1
        magnitude = abs(self.amount)
        shares = [magnitude * w // total for w in weights]
        remainders = [magnitude * w % total for w in weights]
        left = magnitude - sum(shares)
        order = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
        for i in order[:left]:
            shares[i] += 1
        return [Money(sign * s, self.currency) for s in shares]

    def split(self, parts: int) -> list[Money]:
        """Split into `parts` near-equal parts (earlier parts get the extra units)."""
        if parts < 1:
            raise ValueError("parts must be at least 1")
        return self.allocate([1] * parts)

    def to_decimal(self) -> Decimal:
        """The amount in major units, exactly (for display only)."""
        return Decimal(self.amount).scaleb(-currency_exponent(self.currency))

    def format(self, locale: str = "en_US") -> str:
        return str(format_currency(self.to_decimal(), self.currency, locale=locale))

    def __str__(self) -> str:
        return f"{self.to_decimal():f} {self.currency}"


def sum_money(items: Sequence[Money], currency: str) -> Money:
    total = Money.zero(currency)
    for item in items:
        total = total + item
    return total
