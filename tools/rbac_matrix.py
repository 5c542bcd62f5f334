"""docs/rbac.md, the role x route matrix, generated from the code.

    python tools/rbac_matrix.py            # (re)write docs/rbac.md
    python tools/rbac_matrix.py --check    # exit 1 if docs/rbac.md is not what the code says

It walks the routes the FastAPI app serves, finds on each the permission its dependencies
check (`require(Permission.X)`, or a dependency marked with `guards`: see
`kassa.api.auth.required_permission`), and asks `kassa.domain.roles` which roles hold it;
a storefront key's limits within a permission come from `roles.STOREFRONT_LIMITS`.

A route that checks no permission must be listed in `PUBLIC` below with the reason it is
open; tests/api/test_rbac_matrix.py fails for any route under /v1 that is neither (so no
route is ever exposed by accident), and for a `PUBLIC` entry that names no route.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import Mount

from kassa.api.app import create_app
from kassa.api.auth import required_permission
from kassa.bootstrap import Kassa
from kassa.config import Settings
from kassa.domain.roles import STOREFRONT_LIMITS, Permission, Role, allows

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "rbac.md"
COMMAND = "python tools/rbac_matrix.py"
ROLES = (Role.ADMIN, Role.OPS, Role.ANALYST, Role.STOREFRONT)

# Routes open without an API key, each with why (paths as the app declares them).
PUBLIC: dict[str, str] = {
    "/healthz": "load balancers' and orchestrators' probe; says only whether the database "
    "answers and is migrated",
    "/v1/webhooks/{provider}": "the payment providers post their events here; each delivery "
    "is checked by its signature instead (400 without a valid one)",
    "/openapi.json": "the API's own description",
    "/docs": "the API's documentation (Swagger UI), served offline",
    "/docs/oauth2-redirect": "part of Swagger UI",
    "/redoc": "the API's documentation (ReDoc), served offline",
    "/static/{path}": "the documentation's scripts and styles (static files)",
}
# Routes that take a key unless a setting opens them, with that setting.
OPENED_BY_SETTING: dict[str, str] = {
    "/metrics": "public with KASSA_METRICS_PUBLIC=1 (for a Prometheus that holds no key)",
}


@dataclass(frozen=True)
class Row:
    method: str
    path: str
    permissions: tuple[Permission, ...]  # none: public (or unguarded)

    def allowed(self, role: Role) -> bool:
        return all(allows(role, p) for p in self.permissions)

    def note(self) -> str:
        notes = [PUBLIC[self.path]] if not self.permissions and self.path in PUBLIC else []
        if self.path in OPENED_BY_SETTING:
            notes.append(OPENED_BY_SETTING[self.path])
        if self.allowed(Role.STOREFRONT):
            limits = [STOREFRONT_LIMITS[p] for p in self.permissions if p in STOREFRONT_LIMITS]
            notes.extend(f"storefront: {limit}" for limit in limits)
        return "; ".join(notes)


def _tree(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _tree(sub)


def _permissions(route: APIRoute) -> tuple[Permission, ...]:
    found = (required_permission(d.call) for d in _tree(route.dependant))
    return tuple(sorted({p for p in found if p is not None}))


DASHBOARD = "/dashboard"


def app_for_listing() -> FastAPI:
    """The app as `kassa serve` builds it (default settings, a throwaway database: the
    routes do not depend on the data)."""
    return create_app(Kassa(Settings(database_url="sqlite://")))


def rows(app: FastAPI) -> list[Row]:
    """One row per method and path the app serves."""
    found: list[Row] = []
    for context in iter_route_contexts(app.routes):
        route, path = context.original_route, context.path
        if path and path.startswith(DASHBOARD):
            continue  # pages for staff users' sessions, not API keys (same roles, README)
        if isinstance(route, Mount) and path:
            found.append(Row("GET", f"{path}/{{path}}", ()))
        elif isinstance(route, APIRoute) and path:
            for method in sorted(context.methods or route.methods or ()):
                found.append(Row(method, path, _permissions(route)))
        elif path:  # a plain Starlette route (FastAPI's /openapi.json)
            for method in sorted((context.methods or {"GET"}) - {"HEAD"}):
                found.append(Row(method, path, ()))
    return sorted(found, key=lambda r: (r.path, r.method))


def unguarded(found: Iterable[Row]) -> list[Row]:
    """Routes under /v1 that check no permission and are not listed as public."""
    return [
        r for r in found if r.path.startswith("/v1") and not r.permissions and r.path not in PUBLIC
    ]


def _cell(row: Row, role: Role) -> str:
    if not row.permissions:
        return "public" if row.path in PUBLIC else "**none**"
    if not row.allowed(role):
        return "-"
    return (
        "own"
        if role is Role.STOREFRONT and any(p in STOREFRONT_LIMITS for p in row.permissions)
        else "yes"
    )


def render(found: Iterable[Row]) -> str:
    lines = [
        "# Roles and routes",
        "",
        f"Generated by `{COMMAND}` from the code (the routes' `require(Permission.X)`",
        "dependencies and `kassa.domain.roles`); `tests/api/test_rbac_matrix.py` fails when",
        "this file is not what the code says, and for any route under `/v1` that checks no",
        "permission and is not listed as public with its reason. Do not edit by hand.",
        "",
        "Roles: `admin` > `ops` > `analyst` (each may do what the ones below it may), and",
        "`storefront`, a shop's own key, which may create customers, orders and payments and",
        "read what it created, nothing else. A key without the role gets 403",
        "`insufficient_role`; no key or an unknown one, 401.",
        "",
        "`yes`: allowed; `own`: allowed for what that storefront key created only (another",
        "key's is answered 404, as if it did not exist); `-`: 403; `public`: no key needed.",
        "",
        "| Method | Path | Permission | admin | ops | analyst | storefront | Notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in found:
        permission = " + ".join(f"`{p.value}`" for p in row.permissions) or "-"
        cells = " | ".join(_cell(row, role) for role in ROLES)
        lines.append(f"| {row.method} | `{row.path}` | {permission} | {cells} | {row.note()} |")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    found = rows(app_for_listing())
    text = render(found)
    for row in unguarded(found):
        print(f"unguarded: {row.method} {row.path} checks no permission", file=sys.stderr)
    if args.check:
        if not DOC.exists() or DOC.read_text() != text:
            print(f"{DOC.relative_to(ROOT)} is out of date: run `{COMMAND}`", file=sys.stderr)
            return 1
        return 1 if unguarded(found) else 0
    DOC.write_text(text)
    print(f"wrote {DOC.relative_to(ROOT)} ({len(found)} routes)")
    return 1 if unguarded(found) else 0


if __name__ == "__main__":
    sys.exit(main())
