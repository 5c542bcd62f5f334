"""Amounts and times as staff read and type them: major units in the reader's locale (a
refund of 3.00, never 300), timestamps in the shop's time zone.

kassa stores and computes every amount as an integer of minor units; this module is the
one place where the dashboard turns such an integer into text and text back into one.
Typed amounts are parsed with Babel for the reader's locale ("1.234,50" in de_DE,
"1,234.50" in en_GB) and must have no more decimals than the currency has: "3.005 EUR" is
refused, never rounded.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from decimal import Decimal, InvalidOperation

from babel import Locale, UnknownLocaleError
from babel.dates import format_datetime
from babel.numbers import (
    NumberFormatError,
    format_currency,
    format_decimal,
    format_percent,
    parse_decimal,
)

from kassa.domain.money import currency_exponent

DEFAULT_LOCALE = "en_GB"
# The locales the dashboard answers in; Accept-Language picks among them.
LOCALES = ("en_GB", "en_US", "de_DE", "fr_FR", "nl_NL", "sv_SE", "es_ES", "it_IT")


class AmountNotUnderstood(ValueError):
    """A typed amount that is not a positive number of the currency's major units."""


def negotiate_locale(accept_language: str | None) -> str:
    """The best of `LOCALES` for an Accept-Language header, else `DEFAULT_LOCALE`."""
    if not accept_language:
        return DEFAULT_LOCALE
    wanted = []
    for part in accept_language.split(","):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        if tag:
            wanted.append((quality, tag.replace("-", "_")))
    for _, tag in sorted(wanted, key=lambda item: -item[0]):
        try:
            locale = Locale.parse(tag)
        except (UnknownLocaleError, ValueError):
            continue
        for known in LOCALES:
            if str(locale) == known:
                return known
        for known in LOCALES:
            if known.split("_")[0] == locale.language:
                return known
    return DEFAULT_LOCALE


def to_major(amount: int, currency: str) -> Decimal:
    return Decimal(amount).scaleb(-currency_exponent(currency))


def money(amount: int, currency: str, locale: str) -> str:
    """`amount` minor units as the reader writes money: "€3.00", "3,00 €"."""
    return str(format_currency(to_major(amount, currency), currency, locale=locale))


def major_input(amount: int, currency: str, locale: str) -> str:
    """`amount` as the value of an amount input: major units, no symbol, no grouping."""
    exponent = currency_exponent(currency)
    return str(
        format_decimal(
            to_major(amount, currency),
            format="0" + ("." + "0" * exponent if exponent else ""),
            locale=locale,
        )
    )


def parse_amount(text: str, currency: str, locale: str) -> int:
    """Typed major units ("3.00", "3", "1,234.50") to minor units (300, 300, 123450)."""
    cleaned = text.strip()
    if not cleaned:
        raise AmountNotUnderstood("enter an amount")
    try:
        value = parse_decimal(cleaned, locale=locale, strict=True)
    except (NumberFormatError, InvalidOperation) as exc:
        raise AmountNotUnderstood(f"{cleaned!r} is not an amount") from exc
    exponent = currency_exponent(currency)
    minor = value.scaleb(exponent)
    if minor != minor.to_integral_value():
        raise AmountNotUnderstood(
            f"{currency} has {exponent} decimal{'s' if exponent != 1 else ''}: {cleaned!r} has more"
        )
    if minor <= 0:
        raise AmountNotUnderstood("the amount must be more than zero")
    return int(minor)


def parse_signed_amount(text: str, currency: str, locale: str) -> int:
    """As `parse_amount`, but a leading minus is allowed (a wallet debit)."""
    cleaned = text.strip()
    negative = cleaned.startswith(("-", "\u2212"))
    minor = parse_amount(cleaned.lstrip("-\u2212").strip(), currency, locale)
    return -minor if negative else minor


def when(moment: datetime | None, zone: tzinfo, locale: str) -> str:
    """A timestamp in the shop's time zone: "2 Dec 2026, 19:30:05 CET"."""
    if moment is None:
        return ""
    local = moment.astimezone(zone)
    shown = format_datetime(local, "medium", tzinfo=zone, locale=locale)
    return f"{shown} {local.tzname() or ''}".rstrip()


def iso_local(moment: datetime | None, zone: tzinfo) -> str:
    """The `datetime` attribute of a <time> element: ISO 8601 with the shop's offset."""
    return "" if moment is None else moment.astimezone(zone).isoformat(timespec="seconds")


def parse_balance(text: str, currency: str, locale: str) -> int:
    """A wallet balance an operator sets, in major units: as `parse_signed_amount`, and
    zero as well (emptying a wallet is an adjustment like any other)."""
    unsigned = text.strip().lstrip("-\u2212").strip()
    try:
        if unsigned and parse_decimal(unsigned, locale=locale, strict=True) == 0:
            return 0
    except (NumberFormatError, InvalidOperation):
        pass  # not a number: parse_signed_amount says so
    return parse_signed_amount(text, currency, locale)


def percent(fraction: Decimal | float, locale: str, digits: int = 1) -> str:
    """A ratio (0.125) as the reader writes a percentage ("12.5%", "12,5 %")."""
    pattern = "#,##0" + ("." + "0" * digits if digits else "") + "%"
    return str(format_percent(fraction, format=pattern, locale=locale))
