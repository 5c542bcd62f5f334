"""The dashboard mounted into kassa's app: its routers, its static assets, and its refusals
as pages (not the API's problem+json): sign in, change your password, 403, 404.

Its routes are left out of the OpenAPI document: they are pages for people, not the API.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from kassa.dashboard.auth import (
    PASSWORD_PATH,
    PageRefused,
    PasswordChangeNeeded,
    SignInNeeded,
    viewer_for,
)
from kassa.dashboard.pages import ROUTERS
from kassa.dashboard.web import PREFIX, SECURITY_HEADERS, STATIC_DIR, render
from kassa.storage.errors import StorageError

# as the API's 503 says (api/problems.py): worth a retry after this long
RETRY_AFTER_S = 5


def install_dashboard(app: FastAPI) -> None:
    app.mount(PREFIX + "/static", StaticFiles(directory=STATIC_DIR), name="dashboard-static")
    for router in ROUTERS:
        app.include_router(router, include_in_schema=False)  # prefixed: page_router

    async def to_sign_in(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SignInNeeded)
        query = {"next": exc.next_path} if exc.next_path.startswith(PREFIX + "/") else {}
        target = PREFIX + "/sign-in" + ("?" + urlencode(query) if query else "")
        return RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)

    async def to_password(request: Request, exc: Exception) -> Response:
        return RedirectResponse(PREFIX + PASSWORD_PATH, status_code=303, headers=SECURITY_HEADERS)

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PageRefused)
        return render(
            request, exc.viewer, "refused.html.j2", {"message": exc.message}, status=exc.status
        )

    api_storage_handler = app.exception_handlers[StorageError]

    async def storage_down(request: Request, exc: Exception) -> Response:
        """The database is away: a page for a person on the dashboard's paths (the API's
        problem+json everywhere else); the cause stays in the log, as the API's does."""
        if not request.url.path.startswith(PREFIX + "/"):
            answer = api_storage_handler(request, exc)
            return answer if isinstance(answer, Response) else await answer
        response = render(request, viewer_for(request, None), "unavailable.html.j2", status=503)
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response

    app.add_exception_handler(StorageError, storage_down)
    app.add_exception_handler(SignInNeeded, to_sign_in)
    app.add_exception_handler(PasswordChangeNeeded, to_password)
    app.add_exception_handler(PageRefused, refused)
