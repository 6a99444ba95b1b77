"""The image-edit API of spec §8 (``shared/seeds/image-edit.zh.txt``) at
``POST /api/v1/image/generation``, over the same task engine, ledger and limits.

Every field and limit of the page is checked, all problems at once. The edit runs as ``n``
``gpt-image-1-5`` tasks with the images as references; the answer is the page's envelope
``{code, data: {urls, usage, expired, task_id, task_status}, message, request_id}`` once they
end, or, past ``SFUMATO_MAX_PREFER_WAIT_SECONDS``, with ``urls: []`` and the task still
running: ``GET /api/v1/image/generation/{task_id}`` (or the task API) follows it. With
``stream: true`` the answer is server-sent events: ``status`` while the task runs, an
``image_edit.partial_image`` envelope per preview (``partial_images``, 0 to 3, asked of the
upstream; the sandbox makes them offline), then ``image_edit.completed`` with the envelope.

Mapped onto the catalog: ``size`` to ``aspect_ratio``; ``quality`` ``medium``/``high`` as is,
``auto`` to the default and ``low`` to ``medium`` (the catalog's lowest). ``output_format``
with ``output_compression``, ``background``, ``input_fidelity``, ``moderation`` and ``user`` are
request options of ``gpt-image-1-5`` (its ``request_options`` in the catalog): checked here with
the rules between them (a transparent background needs png or webp; compression is for jpeg and
webp), carried with each task and sent to the upstream as OpenAI names them.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from sfumato.api.bodies import json_body
from sfumato.api.dependencies import DepsDep, Principal, PrincipalDep, RateLimitedPrincipal
from sfumato.api.errors import request_id_of
from sfumato.api.request_schemas import BUILTIN_CATALOG, DEFAULT_PROMPT_CAP, image_edit_body
from sfumato.api.routes.files import file_view
from sfumato.api.routes.tasks import view
from sfumato.api.schemas import ImageEditEnvelope
from sfumato.api.surfaces.openai_images import json_images, start_tasks
from sfumato.api.surfaces.openai_params import QUALITY as OPENAI_QUALITY
from sfumato.api.surfaces.openai_params import OpenAIRequest, sizes_of
from sfumato.api.surfaces.openai_stream import sse_event
from sfumato.catalog import ModelSpec
from sfumato.catalog.options import NO_OPTIONS, OPTION_KEYS, RequestOptions, read_options
from sfumato.clock import iso_ms
from sfumato.db.models import StoredFile
from sfumato.deps import Deps
from sfumato.errors import FieldError, ValidationFailed
from sfumato.tasks import service, watch
from sfumato.tasks.queries import AnyTask
from sfumato.tasks.status import Status

router = APIRouter(prefix="/api/v1/image/generation", tags=["image-edit"])
PATH = "/api/v1/image/generation"
MODELS = ("gpt-image-1.5", "gpt-image-1-5")
_MODEL = BUILTIN_CATALOG.get("gpt-image-1-5")
assert _MODEL is not None
SIZES = sizes_of(_MODEL)
"""The page's sizes (auto, 1024x1024, 1536x1024, 1024x1536) mapped as the OpenAI door maps them."""
QUALITY = {value: OPENAI_QUALITY[value] for value in ("auto", "low", "medium", "high")}
"""The page's qualities, mapped by the OpenAI door's table (``low`` → ``medium``, ``auto`` → default)."""
CHOICES = {"background": ("transparent", "opaque", "auto"), "input_fidelity": ("high", "low"),
           "moderation": ("low", "auto"), "output_format": ("png", "jpeg", "webp")}
RANGES = {"n": (1, 10), "output_compression": (0, 100), "partial_images": (0, 3)}
KEEPALIVE_SECONDS = 15.0
FIELDS = ("images", "prompt", "model", "background", "input_fidelity", "moderation", "n", "output_compression",
          "output_format", "partial_images", "quality", "size", "stream", "user")
_responses: dict[int | str, dict[str, Any]] = {
    200: {"model": ImageEditEnvelope, "content": {"text/event-stream": {}}},
    **{code: {"model": ImageEditEnvelope} for code in (401, 402, 404, 409, 413, 422, 429)}}


def _check_images(images: Any) -> list[FieldError]:
    if not isinstance(images, list) or not 1 <= len(images) <= 16:
        return [FieldError("images", "1 to 16 items of {image_url} or {file_id}.")]
    return [FieldError(f"images[{i}]", "Provide exactly one of image_url or file_id.")
            for i, item in enumerate(images)
            if len([k for k in ("image_url", "file_id") if isinstance(item, dict) and item.get(k)]) != 1]


def _check_options(body: dict[str, Any]) -> list[FieldError]:
    problems = [FieldError(key, f"One of {', '.join(allowed)}.")
                for key, allowed in (*CHOICES.items(), ("size", tuple(SIZES)), ("quality", tuple(QUALITY)))
                if key in body and body[key] not in allowed]
    for key, (low, high) in RANGES.items():
        value = body.get(key)
        if key in body and (not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high):
            problems.append(FieldError(key, f"An integer from {low} to {high}."))
    if "stream" in body and not isinstance(body["stream"], bool):
        problems.append(FieldError("stream", "true or false."))
    if "user" in body and not isinstance(body["user"], str):
        problems.append(FieldError("user", "A string."))
    return problems


def _check(deps: Deps, body: dict[str, Any]) -> tuple[list[FieldError], RequestOptions]:
    """Every rule of the page, each broken one named; then the request options, as the
    catalog's model takes them (and the rules between them)."""
    problems = [FieldError(k, "Unknown field.") for k in body if k not in FIELDS]
    problems += _check_images(body.get("images"))
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not 1 <= len(prompt) <= 32000:
        problems.append(FieldError("prompt", "A string of 1 to 32000 characters."))
    if body.get("model") not in MODELS:
        problems.append(FieldError("model", "The model is gpt-image-1.5."))
    problems += _check_options(body)
    if any(p.field in OPTION_KEYS for p in problems):
        return problems, NO_OPTIONS
    options, refused = read_options(_spec(deps), {k: body.get(k) for k in OPTION_KEYS}, {}, edit=True)
    return problems + refused, options


def _spec(deps: Deps) -> ModelSpec:
    spec = deps.catalog.get("gpt-image-1-5")
    assert spec is not None
    return spec


def _asked(deps: Deps, body: dict[str, Any], options: RequestOptions) -> OpenAIRequest:
    spec = _spec(deps)
    params = {k: v for k, v in (("aspect_ratio", SIZES[body.get("size", "auto")]),
                                ("quality", QUALITY[body.get("quality", "auto")])) if v is not None}
    return OpenAIRequest(spec, body["prompt"], params, int(body.get("n", 1)), "url", body.get("size"),
                         spec.output.format_for(params, options.output_format), stream=bool(body.get("stream")),
                         partial_images=int(body.get("partial_images", 0)), options=options)


def envelope_of(deps: Deps, request: Request, tasks: list[AnyTask], seconds: float) -> dict[str, Any]:
    shape = view(deps, request)
    done = [t for t in tasks if t.status == Status.SUCCEEDED]
    urls = [m["url"] for t in done for m in shape.task(t)["result"]["media"]]
    expires = deps.clock.now() + timedelta(seconds=deps.settings.media_url_ttl_seconds)
    statuses = {t.status for t in tasks}
    status = next((s for s in ("running", "queued", "failed", "canceled") if s in statuses), "succeeded")
    data = {"urls": urls, "usage": {"images": len(urls), "seconds": round(seconds, 3), "input_tokens": 0,
                                    "total_tokens": 0, "output_tokens": 0},
            "expired": iso_ms(expires), "task_id": tasks[0].id, "task_status": status,
            "task_ids": [t.id for t in tasks]}
    failed = next((t for t in tasks if t.status in ("failed", "canceled")), None)
    message = "success" if not failed else f"{(failed.error or {}).get('code')}: {(failed.error or {}).get('message')}"
    return {"code": 0, "data": data, "message": message, "request_id": request_id_of(request)}


async def _start(deps: Deps, request: Request, who: Principal) -> tuple[dict[str, Any], list[AnyTask]]:
    body = await json_body(request)
    if not isinstance(body, dict):
        raise ValidationFailed("The body must be a JSON object.", [FieldError("body", "Expected an object.")])
    problems, options = _check(deps, body)
    if problems:
        raise ValidationFailed("The request is not valid.", problems)
    stored = await json_images(deps, who.account_id, body["images"])
    references = [{k: v for k, v in file_view(deps, request, s).items() if k in ("url", "kind", "name", "mimeType")}
                  for s in stored]
    started = await start_tasks(deps, who, _asked(deps, body, options), references)
    return body, started.tasks if body.get("stream") else (await started.ended()).tasks


@router.post("", summary="Edit images (the image-edit API)", responses=_responses, openapi_extra={
    "requestBody": image_edit_body(MODELS, {**CHOICES, "size": tuple(SIZES), "quality": tuple(QUALITY)},
                                   RANGES, max_prompt=min(32000, DEFAULT_PROMPT_CAP), max_images=16,
                                   options=BUILTIN_CATALOG.get("gpt-image-1-5"))})
async def image_generation(request: Request, deps: DepsDep, who: RateLimitedPrincipal) -> Any:
    began = time.monotonic()
    body, tasks = await _start(deps, request, who)
    if body.get("stream"):
        return StreamingResponse(_stream(deps, request, who.account_id, tasks, began),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    return JSONResponse(envelope_of(deps, request, tasks, time.monotonic() - began))


async def _stream(deps: Deps, request: Request, account_id: str, tasks: list[AnyTask], began: float
                  ) -> AsyncIterator[str]:
    """``status`` events as each task moves, ``image_edit.partial_image`` per preview (the page's
    envelope, ``urls`` the preview's signed URL, ``partial_image_index``), then one
    ``image_edit.completed`` with the final envelope; keep-alive comments while nothing moves."""
    ended = []
    for task in tasks:
        last = task
        async for seen in watch.story(deps, account_id, task.id, idle_seconds=KEEPALIVE_SECONDS):
            if seen is None:
                yield ": keep-alive\n\n"
                continue
            last = seen.task
            if seen.status_changed:
                yield f"event: status\ndata: {json.dumps({'task_id': last.id, 'task_status': last.status})}\n\n"
            for index, stored in enumerate(seen.previews, start=seen.first_index):
                yield sse_event("image_edit.partial_image", _partial(deps, request, last, stored, index, began))
        ended.append(last)
    completed = envelope_of(deps, request, ended, time.monotonic() - began)
    yield sse_event("image_edit.completed", completed)


def _partial(deps: Deps, request: Request, task: AnyTask, stored: StoredFile, index: int, began: float
             ) -> dict[str, Any]:
    shown = file_view(deps, request, stored)
    data = {"urls": [shown["url"]], "partial_image_index": index,
            "usage": {"images": 0, "seconds": round(time.monotonic() - began, 3), "input_tokens": 0,
                      "total_tokens": 0, "output_tokens": 0},
            "expired": iso_ms(deps.clock.now() + timedelta(seconds=deps.settings.media_url_ttl_seconds)),
            "task_id": task.id, "task_status": task.status, "task_ids": [task.id]}
    return {"code": 0, "data": data, "message": "partial", "request_id": request_id_of(request)}


@router.get("/{task_id}", summary="An image-edit task, in the page's envelope", responses=_responses)
async def image_generation_task(task_id: str, request: Request, deps: DepsDep, who: PrincipalDep) -> JSONResponse:
    async with deps.db.read() as session:
        task = await service.get_task(session, who.account_id, task_id)
    return JSONResponse(envelope_of(deps, request, [task], 0.0))
