"""Domain errors: a stable machine `code`, a human `detail`, and a kind the adapters map.

The domain knows nothing about HTTP; `ErrorKind` says what sort of problem it is and
the API layer turns that into a status code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class ErrorKind(StrEnum):
    INVALID = "invalid"  # the request is well-formed but breaks a rule (422)
    NOT_FOUND = "not_found"  # the subject does not exist or is not visible (404)
    CONFLICT = "conflict"  # the current state forbids it (409)
    REJECTED = "rejected"  # the request cannot be accepted at all (400)


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One problem with one field of a request, located by a JSON-pointer-like path."""

    loc: tuple[str | int, ...]
    message: str
    type: str = "value_error"


@dataclass(eq=False)
class DomainError(Exception):
    code: str
    detail: str
    kind: ErrorKind = ErrorKind.INVALID
    errors: list[FieldProblem] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.detail)


def invalid(code: str, detail: str, *errors: FieldProblem) -> DomainError:
    return DomainError(code, detail, ErrorKind.INVALID, list(errors))


def not_found(code: str, detail: str) -> DomainError:
    return DomainError(code, detail, ErrorKind.NOT_FOUND)


def conflict(code: str, detail: str) -> DomainError:
    return DomainError(code, detail, ErrorKind.CONFLICT)
