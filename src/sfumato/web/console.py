"""``/console``: the operator's page over the admin API (``/admin/v1``).

Like the playground it is a shell: the modules in ``static/`` (``console.js`` and the two it
imports) sign in with the admin key the operator pastes (kept in the browser's localStorage,
apart from the playground's key) and call the same admin API as any operator's backend. The
usage chart is drawn in the page as SVG, from the data, so nothing comes from a CDN.

The Content-Security-Policy is the playground's, tightened: images only from this origin and
``data:`` (the console shows no generated images), and ``Cache-Control: no-store``.
Nothing inline runs: the template has no ``<script>`` or ``<style>`` body and no ``style``
attribute, so no nonce is needed either.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse

from sfumato.web.assets import SHIPPED, asset_file
from sfumato.web.pages import templates

router = APIRouter(include_in_schema=False)
ASSETS_URL = "/console/assets"
# The console's modules and styles, and the playground's it shares (dom.js, api.js, playground.css),
# looked up by name only.
ASSETS = {name: SHIPPED[name] for name in (
    "console.js", "console-accounts.js", "console-api.js", "console-chart.js", "console.css",
    "dom.js", "api.js", "playground.css")}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


@router.get("/console", response_class=HTMLResponse)
async def console(request: Request) -> HTMLResponse:
    response = templates.TemplateResponse(request, "console.html", {"assets": ASSETS_URL})
    response.headers.update(SECURITY_HEADERS)
    return response


@router.get(ASSETS_URL + "/{name}")
async def asset(name: str) -> FileResponse:
    return asset_file(ASSETS, name, "console")
