"""``/docs`` (Swagger UI) and ``/redoc``: the API reference, rendered offline.

FastAPI's own pages load Swagger UI and Redoc from a CDN (and Redoc's fonts from Google), so on
a server without internet they were blank. The bundles come from the ``fastapi-offline`` package
(Swagger UI 5.x, Apache-2.0; Redoc 2.x standalone, MIT; its own code MIT), served here by name,
with this package's start-up scripts in ``static/`` instead of FastAPI's inline ones. The pages
follow FastAPI's documented self-hosting (docs "Custom Docs UI Static Assets").

The Content-Security-Policy is the playground's, loosened only where these two need it:
Redoc's styled-components insert ``<style>`` elements (allowed by a per-response nonce, handed
to Redoc as its ``nonce`` option), its search runs in a ``blob:`` worker, and both draw icons
from ``data:`` URLs. No inline script runs on either page.
"""

from __future__ import annotations

import importlib.resources
import secrets
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse

from sfumato.web.assets import STATIC, asset_file
from sfumato.web.pages import templates

router = APIRouter(include_in_schema=False)
BUNDLES = Path(str(importlib.resources.files("fastapi_offline") / "static"))
# Looked up by name only: no path is ever joined from input.
ASSETS = {
    "swagger-ui-bundle.js": BUNDLES / "swagger-ui-bundle.js",
    "swagger-ui.css": BUNDLES / "swagger-ui.css",
    "redoc.standalone.js": BUNDLES / "redoc.standalone.js",
    "swagger-init.js": STATIC / "swagger-init.js",
    "redoc-init.js": STATIC / "redoc-init.js",
}
ASSETS_URL = "/docs/assets"


def policy(nonce: str) -> str:
    return (
        "default-src 'none'; script-src 'self'; "
        f"style-src 'self' 'nonce-{nonce}'; img-src 'self' data:; font-src 'self' data:; "
        "connect-src 'self'; worker-src blob:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


def _page(request: Request, name: str, title: str) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    root = request.scope.get("root_path", "")
    response = templates.TemplateResponse(
        request, name, {"title": f"{request.app.title} · {title}", "nonce": nonce,
                        "openapi_url": root + (request.app.openapi_url or "/openapi.json"),
                        "assets": root + ASSETS_URL, "root": root})
    response.headers.update({"Content-Security-Policy": policy(nonce), "Referrer-Policy": "no-referrer",
                             "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"})
    return response


@router.get("/docs", response_class=HTMLResponse)
async def swagger_ui(request: Request) -> HTMLResponse:
    return _page(request, "swagger.html", "API reference (Swagger UI)")


@router.get("/redoc", response_class=HTMLResponse)
async def redoc(request: Request) -> HTMLResponse:
    return _page(request, "redoc.html", "API reference (Redoc)")


@router.get(ASSETS_URL + "/{name}")
async def asset(name: str) -> FileResponse:
    return asset_file(ASSETS, name, "reference")
