"""The browser harness itself, on pages kassa serves today: /docs and /redoc load in
chromium from kassa alone, with no console error; the page guard catches a request to
another host (and aborts it), console errors and uncaught exceptions, and lets through
only what a test allows by pattern; axe-core finds a missing label, also on a page whose
Content-Security-Policy forbids inline scripts; screenshots stay out of the work tree
unless asked for."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, Request

from tests.browser import support
from tests.browser.support import PageGuard, Served, assert_accessible

UNLABELLED_INPUT = """<!doctype html>
<html lang="en"><head><title>Search</title>{head}</head>
<body><main><h1>Search</h1><input type="text" id="q"></main></body></html>"""

LABELLED_INPUT = """<!doctype html>
<html lang="en"><head><title>Search</title></head>
<body><main><h1>Search</h1><label for="q">Order number</label>
<input type="text" id="q"></main></body></html>"""


def test_swagger_ui_renders_from_kassa_alone(page: Page, served: Served) -> None:
    """The contract: /docs loads nothing from another host and logs no error (the guard
    checks both at teardown); the operations come from kassa's own OpenAPI document."""
    response = page.goto("/docs")
    assert response is not None and response.status == 200, response
    page.locator(".opblock-summary-path", has_text="/v1/orders").first.wait_for()
    assert page.title() == "kassa - Swagger UI"
    page.wait_for_load_state("networkidle")


def test_redoc_renders_from_kassa_alone_but_for_its_vendor_logo(
    page: Page, page_guard: PageGuard
) -> None:
    """ReDoc 2.5.4's sidebar always renders "API docs by Redocly" with an <img> from its
    vendor's CDN. kassa's Content-Security-Policy (api/docs.py) refuses it, so nothing
    leaves the machine, but the browser still attempts it and logs the refusal as a
    console error. Both are pinned here, exactly: anything else fails."""
    response = page.goto("/redoc")
    assert response is not None and response.status == 200, response
    page.get_by_role("heading", name="kassa (1)").wait_for()
    page.wait_for_load_state("networkidle")

    logo = "https://cdn.redoc.ly/redoc/logo-mini.svg"
    assert page_guard.outside_requests == [f"GET {logo}"], page_guard.outside_requests
    page_guard.outside_requests.clear()
    page_guard.allow_console(
        r"^Loading the image 'https://cdn\.redoc\.ly/redoc/logo-mini\.svg' violates the"
        r" following Content Security Policy directive"
    )


def test_the_guard_records_and_aborts_a_request_to_another_host(
    page: Page, page_guard: PageGuard
) -> None:
    failures: list[str] = []

    def note(request: Request) -> None:
        failures.append(f"{request.url} {request.failure}")

    page.on("requestfailed", note)
    page.goto("/healthz")
    with page.expect_event("requestfailed"):
        page.set_content('<img src="http://example.invalid/x.png" alt="">')

    assert page_guard.outside_requests == ["GET http://example.invalid/x.png"]
    # aborted by the guard's route, before any lookup or connection
    assert failures == ["http://example.invalid/x.png net::ERR_BLOCKED_BY_CLIENT.Inspector"]
    assert page_guard.console_errors == [], "the browser's note on the abort is not repeated"
    with pytest.raises(AssertionError, match=r"requests to another host:\n  GET http://example"):
        page_guard.check()
    page_guard.outside_requests.clear()  # seen; the teardown's check passes now


def test_the_guard_records_console_errors_and_uncaught_exceptions(
    page: Page, page_guard: PageGuard
) -> None:
    page.goto("/healthz")
    page.evaluate("() => console.error('boom')")
    page.evaluate("() => setTimeout(() => { throw new Error('kaput') })")
    page.wait_for_timeout(100)

    problems = page_guard.problems()
    assert problems[0] == "console errors:" and problems[1].startswith("  boom"), problems
    assert problems[2:] == ["uncaught exceptions:", "  Error: kaput"], problems

    page_guard.allow_console("^boom$")
    assert page_guard.problems() == ["uncaught exceptions:", "  Error: kaput"]
    page_guard.page_errors.clear()  # seen; the teardown's check passes now


def test_the_guard_records_a_request_that_failed_on_the_network(
    page: Page, page_guard: PageGuard, served: Served
) -> None:
    page.route("**/static/app.js", lambda route: route.abort("connectionreset"))
    page.goto("/healthz")
    with page.expect_event("requestfailed"):
        page.set_content('<script src="/static/app.js"></script>')

    assert page_guard.failed_requests == [
        f"GET {served.url}/static/app.js: net::ERR_CONNECTION_RESET"
    ], page_guard.failed_requests
    assert [str(error) for error in page_guard.console_errors] == [
        f"Failed to load resource: net::ERR_CONNECTION_RESET (at {served.url}/static/app.js)"
    ]
    page_guard.failed_requests.clear()  # seen; the teardown's check passes now
    page_guard.console_errors.clear()


def test_an_error_answer_is_a_console_error_unless_allowed(
    page: Page, page_guard: PageGuard
) -> None:
    """How a test that provokes a refusal on purpose lets it pass: by its message only."""
    response = page.goto("/v1/orders")
    assert response is not None and response.status == 401
    assert any("status of 401" in e.text for e in page_guard.console_errors), page_guard
    page_guard.allow_console(r"Failed to load resource: .* status of 401")
    assert page_guard.problems() == []


def test_axe_fails_a_page_with_an_unlabelled_input(page: Page) -> None:
    page.set_content(UNLABELLED_INPUT.format(head=""))
    with pytest.raises(AssertionError, match=r"\[critical\] label: .* on #q"):
        assert_accessible(page, "an unlabelled search box")


def test_axe_runs_on_a_page_whose_policy_forbids_inline_scripts(page: Page) -> None:
    """A strict Content-Security-Policy (the dashboard's kind) does not stop the check, nor
    does the check break the policy (which would log a console error)."""
    strict = '<meta http-equiv="Content-Security-Policy" content="script-src \'self\'">'
    page.set_content(UNLABELLED_INPUT.format(head=strict))
    with pytest.raises(AssertionError, match=r"\[critical\] label: "):
        assert_accessible(page, "an unlabelled search box under a strict policy")


def test_axe_passes_a_labelled_page(page: Page) -> None:
    page.set_content(LABELLED_INPUT)
    assert_accessible(page, "a labelled search box")


def test_screenshots_go_to_tmp_unless_asked_for(
    page: Page,
    screenshot: Callable[[Page, str], Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    page.set_content(LABELLED_INPUT)
    monkeypatch.delenv("KASSA_SCREENSHOTS", raising=False)
    assert screenshot(page, "search") == tmp_path / "search.png"

    asked = tmp_path / "docs-screenshots"
    monkeypatch.setattr(support, "SCREENSHOTS", asked)
    monkeypatch.setenv("KASSA_SCREENSHOTS", "1")
    path = screenshot(page, "search")
    assert path == asked / "search.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
