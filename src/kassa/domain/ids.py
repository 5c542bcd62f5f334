"""Opaque, prefixed public identifiers (`ord_…`, `prod_…`), as the contract names them."""

from __future__ import annotations

import secrets

PREFIXES = frozenset(
    {"prod", "cus", "ord", "pay", "re", "inv", "cn", "evt", "we", "key", "aud", "req", "ol", "wle"}
)


def new_id(prefix: str) -> str:
    if prefix not in PREFIXES:
        raise ValueError(f"unknown id prefix {prefix!r}")
    return f"{prefix}_{secrets.token_hex(12)}"


def has_prefix(value: str, prefix: str) -> bool:
    return value.startswith(prefix + "_") and len(value) > len(prefix) + 1
