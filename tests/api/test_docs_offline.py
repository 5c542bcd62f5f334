"""`/docs` and `/redoc` work without internet: every asset they load comes from kassa itself."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
from fastapi.testclient import TestClient

from kassa.api.app import create_app
from kassa.api.docs import STATIC_DIR
from kassa.bootstrap import Kassa
from kassa.config import Settings

BASE = "http://testserver"


class _Urls(HTMLParser):
    """The URLs a page makes the browser load: script src, link href, img src."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src", "iframe": "src"}.get(tag)
        for name, value in attrs:
            if name == wanted and value:
                self.urls.append(value)


def referenced_urls(html: str) -> list[str]:
    parser = _Urls()
    parser.feed(html)
    return parser.urls


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    # The docs pages need no database; a fresh SQLite file keeps Kassa happy.
    db = tmp_path_factory.mktemp("docs") / "kassa.db"
    core = Kassa(Settings(database_url=f"sqlite:///{db}"))
    try:
        with TestClient(create_app(core)) as test_client:
            yield test_client
    finally:
        core.close()


EXPECTED = {
    "/docs": {
        "swagger-ui-bundle.js": ("javascript", 500_000),
        "swagger-ui.css": ("text/css", 50_000),
        "favicon-32x32.png": ("image/png", 100),
    },
    "/redoc": {
        "redoc.standalone.js": ("javascript", 500_000),
        "favicon-32x32.png": ("image/png", 100),
    },
}


@pytest.mark.parametrize("page", sorted(EXPECTED))
def test_docs_page_loads_only_same_origin_assets(client: TestClient, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    urls = referenced_urls(html)
    assert urls, "the page references no assets at all"
    for url in urls:
        absolute = urlsplit(urljoin(BASE + page, url))
        assert (absolute.scheme, absolute.netloc) == ("http", "testserver"), url
    # Nothing else in the page (inline scripts included) names another host.
    assert not re.search(r"(https?:)?//(?!testserver)[a-z0-9.-]+\.[a-z]{2,}", html), html
    assert "cdn.jsdelivr" not in html and "fonts.googleapis" not in html

    found = {url.rsplit("/", 1)[-1] for url in urls}
    assert set(EXPECTED[page]) <= found, found
    for url in urls:
        name = url.rsplit("/", 1)[-1]
        if name not in EXPECTED[page]:
            continue
        kind, minimum = EXPECTED[page][name]
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert kind in asset.headers["content-type"], (url, asset.headers["content-type"])
        assert len(asset.content) >= minimum, (url, len(asset.content))


@pytest.mark.parametrize("page", sorted(EXPECTED))
def test_docs_pages_forbid_other_origins(client: TestClient, page: str) -> None:
    csp = client.get(page).headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'self'"
    for sources in directives.values():
        assert "http" not in sources and "*" not in sources, csp


def test_swagger_ui_points_at_kassas_openapi_and_its_oauth2_redirect(client: TestClient) -> None:
    html = client.get("/docs").text
    assert "url: '/openapi.json'" in html
    assert "validator.swagger.io" not in html
    assert '"validatorUrl": null' in html
    assert "'/docs/oauth2-redirect'" in html
    redirect = client.get("/docs/oauth2-redirect")
    assert redirect.status_code == 200
    assert "oauth2" in redirect.text.lower()
    assert 'spec-url="/openapi.json"' in client.get("/redoc").text


def test_docs_routes_stay_out_of_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not any(p.startswith(("/docs", "/redoc", "/static")) for p in paths)


def test_missing_static_file_is_a_404(client: TestClient) -> None:
    assert client.get("/static/vendor/nope.js").status_code == 404


def test_vendored_assets_ship_with_their_licences() -> None:
    vendor = STATIC_DIR / "vendor"
    readme = (vendor / "README.md").read_text()
    for folder in ("swagger-ui-5.35.0", "redoc-2.5.4"):
        assert (vendor / folder / "LICENSE").stat().st_size > 500
        assert folder.rsplit("-", 1)[1] in readme
