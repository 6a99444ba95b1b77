"""``/models`` and ``/models/{id}``: each catalog model as a documentation page, rendered from the
same data as the validator and ``/api/v1/models`` (so the page cannot drift from the API).

English by default; ``/th/models/...``, ``?lang=th`` or a browser asking for Thai first renders
the catalog's Thai text and Thai headings. Jinja2 escapes everything the catalog says.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from sfumato.api.dependencies import DepsDep
from sfumato.catalog import ModelSpec
from sfumato.web.words import COMMON_ERRORS, LANGS, OTHER_ERRORS, WORDS

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).with_name("templates"))
EXAMPLE_PROMPT = "A clean editorial product image on a soft studio background"


def language(request: Request, forced: str | None = None) -> str:
    """The path's language, else ``?lang=``, else the browser's first choice, else English."""
    asked = forced or request.query_params.get("lang")
    if asked in LANGS:
        return asked
    first = request.headers.get("accept-language", "").split(",")[0].split(";")[0].strip().lower()
    return "th" if first.startswith("th") else "en"


def text(value: dict[str, str] | None, lang: str) -> str:
    return "" if value is None else value.get(lang) or value.get("en", "")


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def examples(spec: ModelSpec) -> dict[str, str]:
    params = {p.key: p.default for p in spec.params if p.default}
    minimal = {"model": spec.id, "prompt": EXAMPLE_PROMPT, "params": params}
    result = {"minimal": _json(minimal)}
    if spec.references is not None:
        ref = {"url": "https://<your sfumato>/api/v1/files/file_.../content?expires=...&signature=...",
               "kind": "image", "name": "reference-image.png", "mimeType": "image/png"}
        result["reference"] = _json({**minimal, "params": {**params, "referenceMediaItems": [ref]}})
    price = spec.price(params)
    example_id = "task_" + spec.id.replace("-", "_") + "_example"
    created = {"id": example_id, "status": "queued", "model": spec.id, "reserved_credits": price,
               "final_credits": 0, "created_at": "2026-05-11T00:00:00.000Z",
               "updated_at": "2026-05-11T00:00:00.000Z", "result": None, "error": None}
    result["created"] = _json(created)
    width, height = spec.output.size_for(params)
    fmt = spec.output.format_for(params)
    media = {"url": "https://<your sfumato>/api/v1/files/file_.../content?expires=...&signature=...",
             "kind": "image", "name": f"{example_id}-0.{fmt.replace('jpeg', 'jpg')}", "mimeType": f"image/{fmt}",
             "width": width, "height": height}
    result["finished"] = _json({**created, "status": "succeeded", "final_credits": price,
                                "updated_at": "2026-05-11T00:00:09.000Z", "result": {"media": [media]}})
    return result


def _links(path: str) -> dict[str, str]:
    """Each language's address of this page (English pinned with ``?lang=en``, so a Thai-first
    browser can still choose English)."""
    return {"en": f"{path}?lang=en", "th": f"/th{path}"}


def _page(request: Request, name: str, lang: str, path: str, status: int = 200, **context: Any) -> HTMLResponse:
    response = templates.TemplateResponse(
        request, name, {"lang": lang, "t": WORDS[lang], "text": text, "links": _links(path),
                        "other": "th" if lang == "en" else "en", "prefix": "/th" if lang == "th" else "",
                        **context},
        status_code=status)
    response.headers["Content-Language"] = lang
    response.headers["Vary"] = "Accept-Language"
    return response


async def _index(request: Request, deps: DepsDep, forced: str | None) -> HTMLResponse:
    return _page(request, "models.html", language(request, forced), "/models", models=list(deps.catalog))


async def _model(model_id: str, request: Request, deps: DepsDep, forced: str | None) -> HTMLResponse:
    lang = language(request, forced)
    spec = deps.catalog.get(model_id)
    if spec is None:
        return _page(request, "missing.html", lang, "/models", status=404, models=list(deps.catalog))
    return _page(request, "model.html", lang, f"/models/{spec.id}", spec=spec, examples=examples(spec),
                 common_errors=COMMON_ERRORS, other_errors=OTHER_ERRORS,
                 prompt_cap=deps.settings.max_prompt_chars)


@router.get("/models", response_class=HTMLResponse)
async def models_index(request: Request, deps: DepsDep) -> HTMLResponse:
    return await _index(request, deps, None)


@router.get("/th/models", response_class=HTMLResponse)
async def models_index_thai(request: Request, deps: DepsDep) -> HTMLResponse:
    return await _index(request, deps, "th")


@router.get("/models/{model_id}", response_class=HTMLResponse)
async def model_page(model_id: str, request: Request, deps: DepsDep) -> HTMLResponse:
    return await _model(model_id, request, deps, None)


@router.get("/th/models/{model_id}", response_class=HTMLResponse)
async def model_page_thai(model_id: str, request: Request, deps: DepsDep) -> HTMLResponse:
    return await _model(model_id, request, deps, "th")
