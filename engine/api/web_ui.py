"""The web page at ``/ui``: instances, and each one's state and timeline, in a browser.

The page is three static files (``engine/api/ui/``) that read everything through the HTTP
API's list and history routes with ``fetch``; no build step, nothing from the network.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.routing import Mount, Router
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

UI_PATH = "/ui"
UI_DIR = Path(__file__).resolve().with_name("ui")


def mount_ui(app: FastAPI) -> None:
    """Serve ``engine/api/ui/`` at ``/ui`` (``/ui`` itself redirects to ``/ui/``).

    The files hold no instance data, so they are served ahead of the API token check:
    a browser cannot add a header to the page load itself. The page asks for the token in
    a form, keeps it in ``sessionStorage`` (never in the URL, where browser history and
    proxy logs would keep it) and sends it on every API call, where the check applies.
    A path under ``/ui`` that is no file answers 404 (405 for a method other than GET or
    HEAD) in the API's ``{"errorCode", "message"}`` shape.
    """
    assets = Router(routes=[Mount(UI_PATH, app=StaticFiles(directory=UI_DIR, html=True), name="ui")])
    app.add_middleware(_UiAssets, assets=assets)


class _UiAssets:
    """Answer requests under ``/ui`` from the page's files; pass everything else on."""

    def __init__(self, app: ASGIApp, assets: ASGIApp) -> None:
        self.app, self.assets = app, assets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == UI_PATH or path.startswith(UI_PATH + "/")):
            try:
                await self.assets(scope, receive, send)
            except HTTPException as err:
                # Served outside the API's exception handlers: answer in the API's shape here.
                code = {404: "ERR_NOT_FOUND", 405: "ERR_METHOD_NOT_ALLOWED"}.get(err.status_code, "ERR_BAD_REQUEST")
                message = f"{scope.get('method', 'GET')} {path}: {err.detail}"
                response = JSONResponse(status_code=err.status_code, content={"errorCode": code, "message": message},
                                        headers=err.headers)
                await response(scope, receive, send)
        else:
            await self.app(scope, receive, send)
