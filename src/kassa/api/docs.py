"""`/docs` (Swagger UI) and `/redoc` (ReDoc), served from assets shipped in the package.

FastAPI's own docs pages load their JavaScript, CSS and fonts from public CDNs, so they are
blank on a host without internet access. kassa creates its app with `docs_url=None,
redoc_url=None` and calls `install_docs` instead: the same pages, built with FastAPI's
`get_swagger_ui_html` / `get_redoc_html`, pointing at copies of the assets under
`kassa/api/static/vendor/` (versions and licences: `static/vendor/README.md`), which are
served by a `StaticFiles` mount at `/static`.

The pages also carry a Content-Security-Policy that allows this origin only (plus inline
scripts and styles, `data:` images and fonts, and `blob:` workers that the two bundles
need), so a browser never contacts another host from them, not even for the logo that
ReDoc's sidebar would otherwise fetch from its vendor's CDN.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["DOCS_CSP", "REDOC", "STATIC_DIR", "STATIC_URL", "SWAGGER_UI", "install_docs"]

STATIC_DIR = Path(__file__).parent / "static"
STATIC_URL = "/static"
SWAGGER_UI = "vendor/swagger-ui-5.35.0"  # npm swagger-ui-dist@5.35.0
REDOC = "vendor/redoc-2.5.4"  # npm redoc@2.5.4

DOCS_CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'self'",
        "frame-ancestors 'self'",
    )
)


def _secured(response: HTMLResponse) -> HTMLResponse:
    response.headers["Content-Security-Policy"] = DOCS_CSP
    return response


def install_docs(app: FastAPI, *, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Mount the static assets and add the Swagger UI, its OAuth2 redirect and ReDoc."""
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="static")
    redirect_url = f"{docs_url}/oauth2-redirect"

    def root(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        base = root(request)
        assets = f"{base}{STATIC_URL}/{SWAGGER_UI}"
        return _secured(
            get_swagger_ui_html(
                openapi_url=f"{base}{app.openapi_url}",
                title=f"{app.title} - Swagger UI",
                swagger_js_url=f"{assets}/swagger-ui-bundle.js",
                swagger_css_url=f"{assets}/swagger-ui.css",
                swagger_favicon_url=f"{assets}/favicon-32x32.png",
                oauth2_redirect_url=f"{base}{redirect_url}",
                init_oauth=app.swagger_ui_init_oauth,
                # No badge from the public validator service (it would send it the spec).
                swagger_ui_parameters={"validatorUrl": None, **(app.swagger_ui_parameters or {})},
            )
        )

    @app.get(redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return _secured(get_swagger_ui_oauth2_redirect_html())

    @app.get(redoc_url, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        base = root(request)
        return _secured(
            get_redoc_html(
                openapi_url=f"{base}{app.openapi_url}",
                title=f"{app.title} - ReDoc",
                redoc_js_url=f"{base}{STATIC_URL}/{REDOC}/redoc.standalone.js",
                redoc_favicon_url=f"{base}{STATIC_URL}/{SWAGGER_UI}/favicon-32x32.png",
                with_google_fonts=False,
            )
        )
