"""``/models`` and ``/models/{id}``: each catalog model as a documentation page, rendered from the
same data as the validator and ``/api/v1/models`` (so the page cannot drift from the API).

English by default; ``?lang=th`` (or a browser asking for Thai first) renders the catalog's
Thai text and labels. Jinja2 escapes everything the catalog says.
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

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).with_name("templates"))
LANGS = ("en", "th")
WORDS: dict[str, dict[str, str]] = {
    "en": {"models": "Models", "model_id": "Model id", "inputs": "Inputs", "files_api": "Files API",
           "required_for_reference": "required for reference mode", "not_required": "not required",
           "credits": "Credits", "billing": "Billing", "prompt_limit": "Prompt limit", "none": "none documented",
           "characters": "characters", "contract": "Request contract", "params": "Parameters",
           "key": "Key", "type": "Type", "default": "Default", "options": "Options", "label": "Label",
           "references": "Reference files", "no_references": "This model takes no reference files.",
           "up_to": "up to", "files": "files", "minimal": "Minimal request",
           "reference_request": "Request with a reference",
           "response": "Response", "errors": "Error codes", "upstream": "Upstream", "field": "Field",
           "required": "required", "optional": "optional", "meaning": "Meaning", "max_size": "max size",
           "other_lang": "ภาษาไทย", "other_lang_code": "th", "not_found": "No such model."},
    "th": {"models": "โมเดล", "model_id": "Model id", "inputs": "อินพุต", "files_api": "Files API",
           "required_for_reference": "จำเป็นสำหรับโหมดอ้างอิง", "not_required": "ไม่จำเป็น",
           "credits": "เครดิต", "billing": "การคิดเงิน", "prompt_limit": "ความยาว prompt สูงสุด",
           "none": "ไม่ได้ระบุ", "characters": "ตัวอักษร", "contract": "รูปแบบคำขอ", "params": "พารามิเตอร์",
           "key": "คีย์", "type": "ชนิด", "default": "ค่าเริ่มต้น", "options": "ตัวเลือก", "label": "ชื่อ",
           "references": "ไฟล์อ้างอิง", "no_references": "โมเดลนี้ไม่รับไฟล์อ้างอิง", "up_to": "สูงสุด",
           "files": "ไฟล์", "minimal": "คำขอขั้นต่ำ", "reference_request": "คำขอพร้อมภาพอ้างอิง",
           "response": "ผลลัพธ์", "errors": "รหัสข้อผิดพลาด", "upstream": "Upstream", "field": "ฟิลด์",
           "required": "จำเป็น", "optional": "ไม่บังคับ", "meaning": "ความหมาย", "max_size": "ขนาดสูงสุด",
           "other_lang": "English", "other_lang_code": "en", "not_found": "ไม่พบโมเดลนี้"},
}
ERRORS = [("validation_failed", 422), ("unauthorized", 401), ("insufficient_credits", 402), ("not_found", 404),
          ("idempotency_conflict", 409), ("task_not_cancelable", 409), ("file_too_large", 413),
          ("rate_limited", 429), ("service_unavailable", 503)]


def language(request: Request) -> str:
    asked = request.query_params.get("lang")
    if asked in LANGS:
        return asked
    first = request.headers.get("accept-language", "").split(",")[0].strip().lower()
    return "th" if first.startswith("th") else "en"


def text(value: dict[str, str] | None, lang: str) -> str:
    return "" if value is None else value.get(lang) or value.get("en", "")


def examples(spec: ModelSpec) -> dict[str, str]:
    params = {p.key: p.default for p in spec.params if p.default}
    minimal = {"model": spec.id, "prompt": "A clean editorial product image on a soft studio background",
               "params": params}
    result: dict[str, str] = {"minimal": json.dumps(minimal, indent=2, ensure_ascii=False)}
    if spec.references is not None:
        ref = {"url": "https://<your sfumato>/api/v1/files/file_.../content?expires=...&signature=...",
               "kind": "image", "name": "reference.png", "mimeType": "image/png"}
        with_ref = {**minimal, "params": {**params, "referenceMediaItems": [ref]}}
        result["reference"] = json.dumps(with_ref, indent=2, ensure_ascii=False)
    width, height = spec.output.size_for(params)
    response = {"id": "task_...", "status": "succeeded", "model": spec.id, "reserved_credits": spec.price(params),
                "final_credits": spec.price(params), "created_at": "2026-05-11T00:00:00.000Z",
                "updated_at": "2026-05-11T00:00:09.000Z",
                "result": {"media": [{"url": "https://.../content?expires=...&signature=...", "kind": "image",
                                      "name": "task_...-0." + spec.output.format_for(params).replace("jpeg", "jpg"),
                                      "mimeType": f"image/{spec.output.format_for(params)}",
                                      "width": width, "height": height}]},
                "error": None}
    result["response"] = json.dumps(response, indent=2, ensure_ascii=False)
    return result


def _page(request: Request, name: str, lang: str, status: int = 200, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {"lang": lang, "t": WORDS[lang], "text": text, **context},
                                      status_code=status)


@router.get("/models", response_class=HTMLResponse)
async def models_index(request: Request, deps: DepsDep) -> HTMLResponse:
    return _page(request, "models.html", language(request), models=list(deps.catalog))


@router.get("/models/{model_id}", response_class=HTMLResponse)
async def model_page(model_id: str, request: Request, deps: DepsDep) -> HTMLResponse:
    lang = language(request)
    spec = deps.catalog.get(model_id)
    if spec is None:
        return _page(request, "missing.html", lang, status=404, models=list(deps.catalog))
    return _page(request, "model.html", lang, spec=spec, examples=examples(spec), errors=ERRORS,
                 prompt_limit=spec.prompt_max_chars)
