"""``/playground``: a page for trying the models in a browser, and its static files; and the
site's icon (``/favicon.svg``, and ``/favicon.ico`` for the browsers and tools that ask for it).

The page is a shell; the JavaScript modules in ``static/`` build the form from
``GET /api/v1/models`` and talk to the same public API as any client, with the key the user
pastes (kept in the browser's localStorage). The Content-Security-Policy keeps every script
and every request on this origin, so the key can only travel to this server.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse

from sfumato.web.assets import SHIPPED, asset_file
from sfumato.web.pages import templates

router = APIRouter(include_in_schema=False)
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' blob: data: https: http:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


@router.get("/playground", response_class=HTMLResponse)
async def playground(request: Request) -> HTMLResponse:
    response = templates.TemplateResponse(request, "playground.html", {"assets": "/playground/assets"})
    response.headers.update(SECURITY_HEADERS)
    return response


@router.get("/playground/assets/{name}")
async def asset(name: str) -> FileResponse:
    return asset_file(SHIPPED, name, "playground")


@router.get("/favicon.ico")
async def favicon_ico() -> FileResponse:
    return await asset("favicon.ico")


@router.get("/favicon.svg")
async def favicon_svg() -> FileResponse:
    return await asset("favicon.svg")
