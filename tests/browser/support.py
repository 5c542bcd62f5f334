"""The browser tests' harness: kassa served in this process, a guard that fails a page for
console errors, uncaught exceptions, failed requests and any request to another host, the
axe-core accessibility check, and screenshots. The fixtures that use them are in
`tests/browser/conftest.py`."""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import uvicorn
from playwright.sync_api import BrowserContext, ConsoleMessage, Error, Page, Request

from kassa.api.app import create_app
from kassa.bootstrap import Kassa
from kassa.server import config

ROOT = Path(__file__).resolve().parents[2]
AXE_CORE = Path(__file__).parent / "vendor" / "axe-core-4.14.1" / "axe.min.js"
SCREENSHOTS = ROOT / "docs" / "screenshots"
# axe-core's impacts that fail a page (it also reports "moderate" and "minor")
FAILING_IMPACTS = ("serious", "critical")
# how chromium reports a request the guard aborted (route.abort("blockedbyclient"))
BLOCKED_HERE = "net::ERR_BLOCKED_BY_CLIENT"
# a request the browser itself gave up: a download (Content-Disposition: attachment) or a
# page navigated away from while loading; no fault of the server's (its errors are HTTP
# statuses, which the browser logs as console errors)
CANCELLED = "net::ERR_ABORTED"
T = TypeVar("T")


def eventually(read: Callable[[], T | None], *, timeout_s: float = 15) -> T:
    """What `read` returns once it returns something (polled every 50 ms): for what the
    server does after the browser has its answer, e.g. the audit record an export writes
    when its stream closes, which is after the last byte has reached the browser."""
    deadline = time.monotonic() + timeout_s
    while (found := read()) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing within {timeout_s} s")
        time.sleep(0.05)
    return found


# -- kassa served in a thread -------------------------------------------------------------


@dataclass(frozen=True)
class Served:
    """kassa's app answering at `url` (http://127.0.0.1:PORT, no trailing slash), on the
    same `kassa` the test seeds its data through."""

    url: str
    kassa: Kassa

    @property
    def origin(self) -> str:
        return urlsplit(self.url).netloc


@contextmanager
def serve_in_thread(kassa: Kassa, *, timeout_s: float = 30) -> Iterator[Served]:
    """`create_app(kassa)` served by uvicorn, configured as `kassa serve` configures it, on
    a background thread of this process (so it shares `kassa`, and its clock, with the
    test). The socket is bound here, on a port the kernel picks, and handed to uvicorn: no
    other process can take the port between choosing and binding it. Returns once /healthz
    answers 200; on leaving, asks uvicorn to exit and waits for the thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    server = uvicorn.Server(
        config(create_app(kassa), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{port}", daemon=True
    )
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, thread, timeout_s)
        yield Served(url=url, kassa=kassa)
    finally:
        server.should_exit = True
        thread.join(timeout=timeout_s)
        sock.close()
    assert not thread.is_alive(), f"uvicorn on {url} did not stop within {timeout_s} s"


def _wait_healthy(url: str, thread: threading.Thread, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if not thread.is_alive():
            raise AssertionError(f"uvicorn on {url} stopped before /healthz answered")
        try:
            response = httpx.get(url + "/healthz", timeout=2)
        except httpx.HTTPError as exc:
            last = repr(exc)
        else:
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text}"
        time.sleep(0.05)
    raise AssertionError(f"/healthz on {url} did not answer 200 in {timeout_s} s: {last}")


# -- the page guard -----------------------------------------------------------------------


@dataclass(frozen=True)
class ConsoleError:
    text: str
    where: str  # the URL of the script or resource it is about, if the browser says

    def __str__(self) -> str:
        return f"{self.text} (at {self.where})" if self.where else self.text


@dataclass
class PageGuard:
    """What a page must not do, recorded as it happens: console messages of type error,
    uncaught exceptions, requests that failed at the network level, and requests to any
    host but the served one (which the guard also aborts, so nothing leaves the machine).
    An HTTP error answer to a page's own request shows up as a console error ("Failed to
    load resource: ... 403"); a test that provokes one on purpose allows that message
    with `allow_console`, by pattern, and nothing else."""

    origin: str
    console_errors: list[ConsoleError] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    outside_requests: list[str] = field(default_factory=list)
    allowed_console: list[re.Pattern[str]] = field(default_factory=list)
    frozen: bool = False

    def allow_console(self, pattern: str) -> None:
        """Let console errors whose text (without its location) matches the regular
        expression `pattern` (`re.search`) pass, for a test that provokes them on purpose."""
        self.allowed_console.append(re.compile(pattern))

    def watch(self, context: BrowserContext) -> None:
        """Record from every page of `context`, and abort its requests to other hosts."""
        context.route(self.is_outside, lambda route: route.abort("blockedbyclient"))
        context.on("request", self._on_request)
        context.on("requestfailed", self._on_request_failed)
        context.on("console", self._on_console)
        context.on("weberror", lambda web_error: self._on_page_error(web_error.error))

    def is_outside(self, url: str) -> bool:
        """True for a request the served kassa would not answer. `data:` and `blob:` URLs
        never reach a network; `about:blank` is a new page's first document."""
        parts = urlsplit(url)
        if parts.scheme in ("", "data", "blob", "about"):
            return False
        return parts.netloc != self.origin

    def freeze(self) -> None:
        """Record nothing more (the context is about to close)."""
        self.frozen = True

    def problems(self) -> list[str]:
        console_errors = [
            str(error)
            for error in self.console_errors
            if not any(pattern.search(error.text) for pattern in self.allowed_console)
        ]
        lines: list[str] = []
        for title, found in (
            ("requests to another host", self.outside_requests),
            ("console errors", console_errors),
            ("uncaught exceptions", self.page_errors),
            ("failed requests", self.failed_requests),
        ):
            lines += [f"{title}:", *(f"  {item}" for item in found)] if found else []
        return lines

    def check(self) -> None:
        problems = self.problems()
        assert not problems, "the page misbehaved (served at {}):\n{}".format(
            self.origin, "\n".join(problems)
        )

    def _on_request(self, request: Request) -> None:
        if self.frozen:
            return
        if self.is_outside(request.url):
            self.outside_requests.append(f"{request.method} {request.url}")

    def _on_request_failed(self, request: Request) -> None:
        if self.frozen:
            return
        if self.is_outside(request.url):
            return  # aborted by the guard, and reported as a request to another host
        if request.failure == CANCELLED:
            return  # the browser let go of it (a download, a page left while loading)
        self.failed_requests.append(f"{request.method} {request.url}: {request.failure}")

    def _on_console(self, message: ConsoleMessage) -> None:
        if self.frozen:
            return
        where = message.location.get("url", "")
        if message.type != "error" or (self.is_outside(where) and BLOCKED_HERE in message.text):
            return  # the browser's note on a request the guard aborted: reported as such
        self.console_errors.append(ConsoleError(message.text, where))

    def _on_page_error(self, error: Error) -> None:
        if self.frozen:
            return
        self.page_errors.append(f"{error.name}: {error.message}")


# -- accessibility ------------------------------------------------------------------------


def assert_accessible(page: Page, context: str) -> None:
    """Run axe-core (vendored, `tests/browser/vendor/`) on the page as it is now, and fail
    listing every violation of impact serious or critical, with the first few elements it
    found each on. `context` names the page in the failure message.

    axe is evaluated through Playwright rather than added as a <script> tag: a page whose
    Content-Security-Policy allows only its own scripts (as the dashboard's should) blocks
    an inline tag, while evaluation by the browser's automation protocol is not subject to
    the page's policy. The page then needs no change to be checked."""
    if page.evaluate("typeof window.axe") == "undefined":
        page.evaluate(AXE_CORE.read_text(encoding="utf-8") + "\n;undefined")
    results: dict[str, Any] = page.evaluate("() => window.axe.run(document)")
    failing = [v for v in results["violations"] if v.get("impact") in FAILING_IMPACTS]
    assert not failing, f"axe-core: {context} ({page.url}) has serious violations:\n" + "\n".join(
        _describe(violation) for violation in failing
    )


def _describe(violation: dict[str, Any], shown: int = 3) -> str:
    nodes = violation.get("nodes", [])
    targets = [" ".join(map(str, node.get("target", []))) for node in nodes[:shown]]
    more = f" and {len(nodes) - shown} more" if len(nodes) > shown else ""
    return (
        f"  [{violation['impact']}] {violation['id']}: {violation['help']}"
        f" on {', '.join(targets)}{more}"
    )


# -- screenshots --------------------------------------------------------------------------


def screenshots_wanted() -> bool:
    """`make screenshots` (KASSA_SCREENSHOTS=1) writes them into docs/screenshots/; any
    other run writes them to the test's temporary directory, so `make test` leaves the
    work tree clean while still taking every screenshot."""
    return os.environ.get("KASSA_SCREENSHOTS") == "1"


def take_screenshot(page: Page, name: str, scratch: Path) -> Path:
    """A full-page PNG of `page` named `<name>.png`, in docs/screenshots/ or in `scratch`
    (see `screenshots_wanted`); returns its path."""
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", name), f"screenshot name {name!r}: a-z, 0-9, -"
    directory = SCREENSHOTS if screenshots_wanted() else scratch
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
