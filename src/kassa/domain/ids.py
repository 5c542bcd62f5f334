"""Opaque, prefixed public identifiers (`ord_…`, `prod_…`), as the contract names them.

24 hex digits after the prefix: the creation time in milliseconds (12), then 48 random
bits (12). Time first so that ids created together sit together in the unique indexes on
them: a random id lands every insert on a B-tree leaf page of its own, which on a table
of a million orders cost an order's create ~36-47 KB of WAL and a quarter more database
CPU than on an empty one (bench/scale.py, issue 10); a time-ordered one ~5.6 KB, flat.
Ids stay opaque (nothing may parse them) and unguessable enough for what they are, which
is not a secret: every read is checked against the caller's key.
"""

from __future__ import annotations

import secrets
import time

PREFIXES = frozenset(
    {"prod", "cus", "ord", "pay", "re", "inv", "cn", "evt", "we", "key", "aud", "req", "ol", "wle"}
    | {"chk"}  # v1.1: check findings
    | {"whd", "eml"}  # v1.1: outgoing webhook deliveries, e-mails
    | {"usr", "ses"}  # v1.1: staff users and their dashboard sessions
)


def new_id(prefix: str) -> str:
    if prefix not in PREFIXES:
        raise ValueError(f"unknown id prefix {prefix!r}")
    return f"{prefix}_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(6)}"


def has_prefix(value: str, prefix: str) -> bool:
    return value.startswith(prefix + "_") and len(value) > len(prefix) + 1
