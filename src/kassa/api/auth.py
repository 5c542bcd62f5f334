"""Bearer API keys and role checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from kassa.api.problems import ApiProblem
from kassa.bootstrap import Kassa
from kassa.domain.roles import Permission, allows
from kassa.services.api_keys import ApiKeyView
from kassa.services.context import RequestContext

_WWW = {"WWW-Authenticate": "Bearer"}
F = TypeVar("F", bound=Callable[..., Any])


def kassa_of(request: Request) -> Kassa:
    core: Kassa = request.app.state.kassa
    return core


async def kassa_dependency(request: Request) -> Kassa:
    """`kassa_of` as a dependency: async, so FastAPI runs it on the event loop instead of
    sending it to the thread pool (a hop per request for a dictionary lookup)."""
    return kassa_of(request)


async def authenticate(request: Request) -> ApiKeyView:
    """The API key behind this request, looked up once and remembered on the request."""
    cached: ApiKeyView | None = getattr(request.state, "api_key", None)
    if cached is not None:
        return cached
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise ApiProblem(
            401, "missing_api_key", "send 'Authorization: Bearer <secret>'", headers=_WWW
        )
    keys = kassa_of(request).api_keys
    # A key this process has fresh in memory needs no thread and no database.
    key = keys.cached(secret.strip()) or await run_in_threadpool(keys.authenticate, secret.strip())
    if key is None:
        raise ApiProblem(401, "invalid_api_key", "the API key is unknown or revoked", headers=_WWW)
    request.state.api_key = key
    return key


def request_context(request: Request, key: ApiKeyView) -> RequestContext:
    return RequestContext(
        actor_key_id=key.id,
        role=key.role,
        request_id=getattr(request.state, "request_id", None),
    )


def check_permission(request: Request, key: ApiKeyView, permission: Permission) -> RequestContext:
    """403 `insufficient_role` unless `key`'s role holds `permission`; else the context."""
    if not allows(key.role, permission):
        raise ApiProblem(
            403, "insufficient_role", f"a {key.role.value} key may not {permission.value}"
        )
    return request_context(request, key)


# The attribute naming the permission a guarding dependency checks (`required_permission`).
_PERMISSION = "kassa_permission"


def guards(permission: Permission) -> Callable[[F], F]:
    """Mark a dependency as checking `permission`, for `required_permission` (what
    tools/rbac_matrix.py reads to write docs/rbac.md, and its test)."""

    def mark(dependency: F) -> F:
        setattr(dependency, _PERMISSION, permission)
        return dependency

    return mark


def required_permission(dependency: object) -> Permission | None:
    """The permission a dependency checks, if it is one made by `require` (or marked with
    `guards`)."""
    permission = getattr(dependency, _PERMISSION, None)
    return permission if isinstance(permission, Permission) else None


def require(permission: Permission) -> Callable[..., object]:
    """A dependency that authenticates and checks one permission; yields the context."""

    @guards(permission)
    async def dependency(
        request: Request, key: ApiKeyView = Depends(authenticate)
    ) -> RequestContext:
        return check_permission(request, key, permission)

    return dependency
