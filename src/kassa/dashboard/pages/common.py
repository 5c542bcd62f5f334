"""What several dashboard pages answer alike, in one place: the status of a refused action,
the message for a field typed too long, and a listing read through a cursor that may have
gone stale. Each is a rule the pages share (a change to it is a change to all of them), not
just lines that happen to look the same."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from fastapi import APIRouter

from kassa.dashboard.web import PREFIX
from kassa.domain.errors import DomainError, ErrorKind

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Listing(Protocol[T_co]):
    """A page of a service's list (`storage.pagination.Page`, which the dashboard may not
    import: it reaches storage only through services)."""

    @property
    def data(self) -> Sequence[T_co]: ...

    @property
    def has_more(self) -> bool: ...


def refused_status(exc: DomainError) -> int:
    """The status a page re-rendered with a refused action's reason answers with: as the
    API's problems, 404 for what is not there, 409 for a conflict, else 422."""
    return {ErrorKind.NOT_FOUND: 404, ErrorKind.CONFLICT: 409}.get(exc.kind, 422)


def too_long(what: str, typed: str, limit: int) -> str:
    """Why `typed` is refused ("The name has 201 characters; at most 200."), or "" if it
    fits: checked before the service is asked, so the form comes back with what was typed."""
    return f"The {what} has {len(typed)} characters; at most {limit}." if len(typed) > limit else ""


def listed(read: Callable[[], Listing[T]]) -> tuple[list[T], bool]:
    """A listing's rows and whether there are more; a cursor the service refuses (stale,
    or typed by hand) lists nothing rather than failing the page: its links start again
    from the newest."""
    try:
        page = read()
    except DomainError:
        return [], False
    return list(page.data), page.has_more


def page_router() -> APIRouter:
    """A router for one area's pages, with the dashboard's prefix in its own paths: kassa's
    /metrics labels a request with its route's path, which must be the whole template (a
    prefix given to `include_router` is not in it: tests/api/test_rbac_matrix.py)."""
    return APIRouter(prefix=PREFIX)
