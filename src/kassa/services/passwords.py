"""Staff passwords: Argon2id hashes (argon2-cffi's defaults, RFC 9106's second
recommended profile) and the one-time passwords kassa hands out.

Unlike an API key's 256 random bits, a password a person chose can be guessed, so it is
hashed slowly and with memory (Argon2id) and never compared any other way.
"""

from __future__ import annotations

import secrets
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()

# Letters and digits that cannot be mistaken for one another when read aloud or copied
# off a screen (no 0/O, 1/l/I): a one-time password is typed by a person once.
_READABLE = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_GROUPS, _GROUP_LENGTH = 4, 4  # 16 characters, ~92 random bits, as `xxxx-xxxx-xxxx-xxxx`


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether `password` matches; a malformed stored hash never does."""
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with weaker parameters than today's (rehash on sign-in)."""
    return _HASHER.check_needs_rehash(password_hash)


@cache
def dummy_hash() -> str:
    """Verified against when no user has the e-mail, so that an unknown address takes as
    long to refuse as a wrong password and the answer's timing does not tell which it was.
    Made on first use, not at import (every CLI command imports this)."""
    return hash_password(secrets.token_urlsafe(16))


def one_time_password() -> str:
    """A random password for a new or reset user, to be changed at their first sign-in."""
    return "-".join(
        "".join(secrets.choice(_READABLE) for _ in range(_GROUP_LENGTH)) for _ in range(_GROUPS)
    )
