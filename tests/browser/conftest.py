"""Fixtures for tests in a real browser: Debian's `chromium`, driven by Playwright through
`executable_path` (Playwright never downloads a browser here), on kassa served by uvicorn
in this process. Helpers: `tests/browser/support.py`.

A test asks for `page` (a fresh browser context on the served kassa; its guard fails the
test on console errors, uncaught exceptions, failed requests and requests to other hosts)
and, for its data, `served.kassa` (the test's `kassa`, so `keys`, `clock` and the builders
work as in the API tests). Every test runs on SQLite and PostgreSQL, through `kassa`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, ViewportSize, sync_playwright

from kassa.bootstrap import Kassa
from tests.browser.support import PageGuard, Served, serve_in_thread, take_screenshot
from tests.conftest import IN_CI

VIEWPORT: ViewportSize = {"width": 1280, "height": 900}


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """KASSA_CHROMIUM, else `chromium` on PATH (.ci/run installs Debian's package). None:
    skipped on a developer's machine, failed under CI, which must never skip these."""
    found = os.environ.get("KASSA_CHROMIUM") or shutil.which("chromium")
    if not found:
        message = "no chromium: apt-get install chromium fonts-dejavu-core, or set KASSA_CHROMIUM"
        if IN_CI:
            pytest.fail(message + " (CI=true: the browser tests must run)")
        pytest.skip(message)
    return found


@pytest.fixture(scope="module")
def browser(chromium_executable: str) -> Iterator[Browser]:
    """One headless chromium per test file (so per xdist worker: `--dist loadfile` keeps a
    file on one worker); `--no-sandbox` because the tests run as root. Playwright's own
    launch flags already turn off chromium's background networking, component updates and
    sync, so the browser contacts no host of its own accord.

    Not session-wide: Playwright's sync API keeps its asyncio loop marked as running on
    this thread while it is started, and `asyncio.run` in any later test of the worker
    (tests/unit/test_admission.py, ...) would then raise. Launching takes about 0.5 s."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_executable, headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def served(kassa: Kassa) -> Iterator[Served]:
    """kassa's app on 127.0.0.1 and a free port, served by uvicorn on a thread of this
    process, on the test's `kassa` (tests/conftest.py).

    That `kassa` runs on a FakeClock, and that is kept on purpose: it starts at the real
    current time, so cookies and timestamps a browser sees are current, and it is the same
    object the test seeds data through, so a test can `clock.advance(...)` to expire a
    session or pass a rate-limit window without waiting. What follows: time stands still
    on the server unless the test moves it (every request in a test sees the same instant),
    and kassa's `sleep` advances that clock instead of waiting. A test that needs a server
    on the wall clock builds its own `Kassa(settings)` and uses `serve_in_thread`."""
    with serve_in_thread(kassa) as running:
        yield running


@pytest.fixture
def page_guard(served: Served) -> PageGuard:
    """The `page`'s guard; `page_guard.allow_console(pattern)` lets an expected console
    error pass (e.g. the browser's "Failed to load resource: ... 403" in a 403 test)."""
    return PageGuard(origin=served.origin)


@pytest.fixture
def page(browser: Browser, served: Served, page_guard: PageGuard) -> Iterator[Page]:
    """A page in a new browser context (1280x900, en-GB, UTC) whose relative URLs resolve
    against the served kassa (`page.goto("/docs")`). At teardown the guard's findings fail
    the test, listed one per line."""
    context = browser.new_context(
        viewport=VIEWPORT,
        locale="en-GB",
        timezone_id="UTC",
        base_url=served.url,
    )
    page_guard.watch(context)
    try:
        yield context.new_page()
        # judged before closing: closing aborts whatever is still loading, which is not
        # the page's fault
        page_guard.freeze()
    finally:
        context.close()
    page_guard.check()


@pytest.fixture
def screenshot(tmp_path: Path) -> Callable[[Page, str], Path]:
    """`screenshot(page, "orders")`: a full-page PNG, into docs/screenshots/orders.png under
    `make screenshots` (KASSA_SCREENSHOTS=1), else into the test's tmp_path."""

    def take(page: Page, name: str) -> Path:
        return take_screenshot(page, name, tmp_path)

    return take
