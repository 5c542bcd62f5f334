"""docs/rbac.md is generated from the code and held to it; no route under /v1 is open by
accident; and the matrix is what requests with each role's key actually get.

Regenerate after adding or changing a route: `python tools/rbac_matrix.py`."""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from tests.conftest import Keys

ROOT = Path(__file__).resolve().parents[2]


def _load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rbac_matrix", ROOT / "tools" / "rbac_matrix.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


tool = _load_tool()


@pytest.fixture(scope="module")
def app() -> Iterator[FastAPI]:
    built: FastAPI = tool.app_for_listing()
    yield built
    built.state.kassa.close()


@pytest.fixture(scope="module")
def rows(app: FastAPI) -> list[Any]:
    return list(tool.rows(app))


def test_docs_rbac_md_is_what_the_code_says(rows: list[Any]) -> None:
    committed = tool.DOC.read_text() if tool.DOC.exists() else ""
    assert committed == tool.render(rows), (
        f"docs/rbac.md is out of date: run `{tool.COMMAND}` and commit docs/rbac.md"
    )


def test_every_v1_route_checks_a_permission_or_says_why_it_is_public(rows: list[Any]) -> None:
    unguarded = [f"{r.method} {r.path}" for r in tool.unguarded(rows)]
    assert not unguarded, (
        f"routes under /v1 that check no permission: {unguarded}. Give each a "
        "`Depends(require(Permission.X))`, or, if it must be open, list it in PUBLIC in "
        f"tools/rbac_matrix.py with the reason; then run `{tool.COMMAND}`"
    )


def test_the_check_finds_a_route_added_without_a_permission(app: FastAPI) -> None:
    @app.get("/v1/oops")
    def oops() -> dict[str, str]:
        return {}

    try:
        assert [(r.method, r.path) for r in tool.unguarded(tool.rows(app))] == [("GET", "/v1/oops")]
    finally:
        app.router.routes.pop()


def test_every_public_entry_names_a_route_the_app_serves(rows: list[Any]) -> None:
    paths = {r.path for r in rows}
    assert set(tool.PUBLIC) <= paths, set(tool.PUBLIC) - paths
    assert set(tool.OPENED_BY_SETTING) <= paths, set(tool.OPENED_BY_SETTING) - paths
    guarded_public = [r.path for r in rows if r.path in tool.PUBLIC and r.permissions]
    assert not guarded_public, f"listed as public but they check a permission: {guarded_public}"


def test_metrics_label_a_request_with_the_path_the_app_serves(app: FastAPI) -> None:
    """/metrics labels a request with its matched route's `path` (kassa.api.metrics): that
    must be the whole template, which it is not for a router included with a prefix."""
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            assert context.original_route.path == context.path, context.path


# -- the matrix against real requests ------------------------------------------------------


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x_missing", path)


def _call(client: TestClient, method: str, path: str, headers: dict[str, str]) -> int:
    body: dict[str, Any] = {"json": {}} if method in ("POST", "PATCH", "PUT") else {}
    return client.request(method, _concrete(path), headers=headers, **body).status_code


def test_each_role_gets_what_the_matrix_says(
    client: TestClient, keys: Keys, rows: list[Any]
) -> None:
    """Every guarded route, with each role's key, on ids that do not exist: a role the matrix
    refuses gets 403; one it allows gets past the role check (404, 422, 200: anything but
    401 or 403)."""
    wrong = []
    for row in rows:
        if not row.permissions:
            continue
        for role in tool.ROLES:
            status = _call(client, row.method, row.path, keys.headers(role.value))
            allowed = row.allowed(role)
            if (status == 403) == allowed or status == 401:
                wrong.append((row.method, row.path, role.value, status, allowed))
    assert not wrong, wrong
