"""The OpenAI-compatible images API: ``POST /v1/images/generations`` and ``/v1/images/edits``,
for clients that already speak it (the official ``openai`` SDK with ``base_url`` pointed here).

Same engine, same ledger, same limits: each image is a task created through the task service
(reserved, idempotent, rate-limited like ``POST /api/v1/tasks``), run by the workers, and
charged exactly as a task; this door only waits for the tasks to end (up to
``SFUMATO_MAX_PREFER_WAIT_SECONDS``) and answers in OpenAI's shape. ``n`` images are ``n``
tasks, reserved together or not at all. Errors use OpenAI's envelope (``api/errors.py``).

One image with a worker in this process and a slot free skips the queue: the task is created
already claimed by that worker (``Worker.run_now``), which runs it like any claimed task, and
the answer is made from the bytes the worker stored, with nothing read back. With ``stream: true``
the answer is OpenAI's image event stream (``openai_stream.py``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import os
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import select
from starlette.datastructures import UploadFile

from sfumato import metrics
from sfumato.api.bodies import json_body, refuse_declared_oversize, refuse_unstorable
from sfumato.api.dependencies import DepsDep, Principal, RateLimitedPrincipal
from sfumato.api.request_schemas import BUILTIN_CATALOG, DEFAULT_PROMPT_CAP, openai_bodies
from sfumato.api.routes.files import file_view
from sfumato.api.routes.tasks import view
from sfumato.api.schemas import OpenAIErrorEnvelope, OpenAIImagesResponse
from sfumato.api.surfaces import openai_async, openai_params, openai_stream
from sfumato.catalog import validate_task_request
from sfumato.db.models import StoredFile
from sfumato.db.notify import TASK_QUEUED, notify
from sfumato.deps import Deps
from sfumato.errors import FieldError, SfumatoError, ValidationFailed
from sfumato.files import queries as file_queries
from sfumato.files import uploads
from sfumato.files.multipart import SpooledFile
from sfumato.files.urls import file_id_from_url
from sfumato.tasks import service, watch
from sfumato.tasks.queries import AnyTask, TaskRow
from sfumato.tasks.status import Status
from sfumato.worker.loop import Worker
from sfumato.worker.runner import TaskRun

router = APIRouter(prefix="/v1/images", tags=["openai-compatible"])
_responses: dict[int | str, dict[str, Any]] = {
    code: {"model": OpenAIErrorEnvelope} for code in (400, 401, 402, 409, 413, 429, 502, 503, 504)}
_responses[200] = {"description": "The images; with `stream: true`, OpenAI's image event stream (`: keep-alive` "
                   "comments while it is made).",
                   "content": {"text/event-stream": {"schema": {  # one event, as SSE tools read it
                       "type": "object", "required": ["event", "data"], "properties": {
                           "event": {"enum": ["image_generation.partial_image", "image_generation.completed",
                                              "image_edit.partial_image", "image_edit.completed", "error"]},
                           "data": {"type": "string", "contentMediaType": "application/json"}}}}}}
_responses[202] = openai_async.RESPONSE
MAX_IMAGES = 16
FAILED_STATUS = {"content_policy_violation": 400, "upstream_invalid_request": 400, "timeout": 504,
                 "upstream_timeout": 504}


class TaskDidNotSucceed(SfumatoError):
    code = "task_failed"
    status = 502


class StillRunning(SfumatoError):
    code = "timeout"
    status = 504


async def _chunks(part: UploadFile | bytes) -> AsyncIterator[bytes]:
    if isinstance(part, bytes):
        yield part
        return
    while chunk := await part.read(256 * 1024):
        yield chunk


async def _spool_upload(deps: Deps, account_id: str, part: UploadFile | bytes, name: str | None) -> StoredFile:
    """An image sent with the request, kept as an upload (typed from its bytes, size-limited)."""
    fd, spool = tempfile.mkstemp(dir=deps.storage.temp_dir(), prefix="upload-", suffix=".part")
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in _chunks(part):
                size += len(chunk)
                if size > deps.settings.upload_max_bytes:
                    raise ValidationFailed(details=[FieldError(
                        "image", f"An image is over the {deps.settings.upload_max_bytes} byte upload limit.")])
                out.write(chunk)
    except BaseException:
        Path(spool).unlink(missing_ok=True)  # noqa: ASYNC240 (synchronous: a cancelled await would leave it)
        raise
    return await uploads.store_upload(deps, account_id, SpooledFile(Path(spool), name, size), deps.clock.now())


async def json_images(deps: Deps, account_id: str, images: Any) -> list[StoredFile]:
    """``images: [{image_url} | {file_id}]``: a ``data:`` URL (stored as an upload), or a file
    this account already has (by id or by its sfumato URL). Nothing is fetched from elsewhere."""
    if not isinstance(images, list) or len(images) > MAX_IMAGES:
        raise ValidationFailed(details=[FieldError("images", f"A list of at most {MAX_IMAGES} images.")])
    found = []
    for index, item in enumerate(images):
        ref = item if isinstance(item, dict) else {}
        url, file_id = ref.get("image_url"), ref.get("file_id")
        if isinstance(url, str) and url.startswith("data:") and "base64," in url:
            try:
                data = base64.b64decode(url.split("base64,", 1)[1], validate=True)
            except (binascii.Error, ValueError):
                raise ValidationFailed(details=[FieldError(f"images[{index}]", "Not valid base64.")]) from None
            found.append(await _spool_upload(deps, account_id, data, f"image-{index}"))
            continue
        file_id = file_id if isinstance(file_id, str) else (file_id_from_url(url) if isinstance(url, str) else None)
        async with deps.db.read() as session:
            stored = await session.scalar(select(StoredFile).where(
                StoredFile.id == (file_id or ""), StoredFile.account_id == account_id))
        if stored is None:
            raise ValidationFailed(details=[FieldError(f"images[{index}]", "Send a data: URL, or the id or URL of a "
                                                       "file uploaded to this server by this account.")])
        found.append(stored)
    return found


@dataclass(slots=True)
class Ran:
    tasks: list[AnyTask]
    images: dict[str, bytes] = field(default_factory=dict)
    """Output bytes this process already holds, by file id (those it need not read back)."""


@dataclass(slots=True)
class Started:
    """Tasks created for one request: waited for with :meth:`ended`."""

    deps: Deps
    account_id: str
    tasks: list[AnyTask]
    run: TaskRun | None = None
    """The run of the one task handed straight to this process's worker, if it was."""

    async def ended(self) -> Ran:
        deps, cap = self.deps, self.deps.settings.max_prefer_wait_seconds
        if self.run is not None:
            return await _waited(deps, self.run, self.tasks[0].created_at)
        if len(self.tasks) == 1:  # watched from here, at once: no loop turn for the worker to finish unseen
            return Ran([await watch.until_done(deps, self.account_id, self.tasks[0].id, cap, known=self.tasks[0])])
        return Ran(list(await asyncio.gather(*(watch.until_done(deps, self.account_id, t.id, cap)
                                               for t in self.tasks))))


async def start_tasks(deps: Deps, who: Principal, asked: openai_params.OpenAIRequest,
                      references: list[dict[str, Any]], *, worker: Worker | None = None) -> Started:
    """Create ``n`` tasks in one transaction (reserved together or not at all), under the
    limits of ``who``'s key (its models and budget). One plain image is handed to ``worker``
    (this process's) at once when it has a slot free."""
    account_id, key = who.account_id, who.key
    params: dict[str, Any] = {**asked.params, **({"referenceMediaItems": references} if references else {})}
    # previews are asked of the upstream only for a client that streams (they cost it output)
    options = asked.options.model_copy(update={"partial_images": asked.partial_images if asked.stream else 0})
    task_request = dataclasses.replace(validate_task_request(
        {"model": asked.model.id, "prompt": asked.prompt, "params": params}, deps.catalog,
        max_prompt_chars=deps.settings.max_prompt_chars), options=options)  # read by the door (to_task)
    created: list[AnyTask]
    if asked.n == 1 and service.is_plain(task_request):
        if worker is not None:
            now = deps.clock.now()
            run = await worker.run_now(lambda lease: service.create_running(
                deps.db.driver, account_id, task_request, now, lease, api_key=key))
            if run is not None:
                _count_created(asked, run.claim.reserved_credits, 1)
                claim = run.claim
                row = TaskRow(claim.task_id, account_id, claim.model, Status.RUNNING.value, claim.reserved_credits,
                              0, now, now, None, None)
                return Started(deps, account_id, [row], run)
        created = [await service.create_plain(deps.db.driver, account_id, task_request, deps.clock.now(),
                                              api_key=key)]
    else:
        async with deps.db.write() as session:
            created = [(await service.create_task(session, account_id, task_request, deps.clock.now(),
                                                  idempotency_window=deps.idempotency_window,
                                                  signer=deps.signer, api_key=key)).task
                       for _ in range(asked.n)]
            await notify(session, TASK_QUEUED)
    deps.signals.task_queued()
    _count_created(asked, sum(t.reserved_credits for t in created), len(created))
    return Started(deps, account_id, created)


def _count_created(asked: openai_params.OpenAIRequest, reserved: int, count: int) -> None:
    metrics.TASKS_CREATED.labels(asked.model.id).inc(count)
    metrics.CREDITS.labels("reserved").inc(reserved)


async def _waited(deps: Deps, run: TaskRun, created_at: datetime) -> Ran:
    """The task ``run`` (started here) once it has ended, from what the run wrote; from the
    database if it ended otherwise (canceled, or by another actor) or is still running at the cap."""
    claim = run.claim
    with contextlib.suppress(TimeoutError):  # the run is the worker's: waiting less never stops it
        await asyncio.wait_for(run.finished.wait(), deps.settings.max_prefer_wait_seconds)
    ended = run.ended
    if ended is None:
        return Ran([await watch.until_done(deps, claim.account_id, claim.task_id, 0)])
    task = TaskRow(claim.task_id, claim.account_id, claim.model, ended.status.value, claim.reserved_credits,
                   ended.final_credits, created_at, deps.clock.now(), ended.result, ended.error)
    return Ran([task], ended.images or {})


async def _answer(deps: Deps, request: Request, asked: openai_params.OpenAIRequest, ran: Ran) -> JSONResponse:
    return JSONResponse(await _answer_body(deps, request, asked, ran))


async def _answer_body(deps: Deps, request: Request, asked: openai_params.OpenAIRequest, ran: Ran, *,
                       b64: bool = False) -> dict[str, Any]:
    """The answer's body; ``b64``: images inline whatever ``response_format`` asked (the stream's)."""
    ended = ran.tasks
    done = [t for t in ended if t.status == Status.SUCCEEDED]
    if not done:
        unfinished = [t.id for t in ended if t.status in (Status.QUEUED, Status.RUNNING)]
        if unfinished:
            raise StillRunning(f"Not finished within {deps.settings.max_prefer_wait_seconds} s; follow the "
                               f"tasks at /api/v1/tasks/{{id}}: {', '.join(unfinished)}.")
        error = ended[0].error or {}
        failure = TaskDidNotSucceed(f"{error.get('code')}: {error.get('message')} (task {ended[0].id})")
        failure.status = FAILED_STATUS.get(str(error.get("code")), 502)
        failure.code = str(error.get("code") or "task_failed")
        raise failure
    shape = view(deps, request)
    data = []
    for task in done:
        kept = (task.result or {}).get("media", [])
        for entry, media in zip(kept, shape.task(task)["result"]["media"], strict=True):
            if asked.response_format == "url" and not b64:
                data.append({"url": media["url"]})
            else:
                held = ran.images.get(entry["file_id"])
                image = held if held is not None else await _bytes(deps, entry["file_id"])
                data.append({"b64_json": base64.b64encode(image).decode()})
    first = (done[0].result or {}).get("media", [{}])[0]
    return {
        "created": int(time.time()), "data": data, "output_format": asked.output_format,
        "size": asked.size or f"{first.get('width')}x{first.get('height')}",
        "quality": asked.params.get("quality", "auto"), "background": asked.background,
    }


async def _bytes(deps: Deps, file_id: str) -> bytes:
    return await deps.storage.get(await file_queries.storage_key(deps.db.driver, file_id))


@router.post("/generations", summary="Create images (OpenAI-compatible)", response_model=OpenAIImagesResponse,
             responses=_responses, openapi_extra={"requestBody": openai_bodies(
                 BUILTIN_CATALOG, openai_params.MODEL_ALIASES, DEFAULT_PROMPT_CAP, default_model="gpt-image-1.5",
                 ignored=openai_params.IGNORED, max_n=openai_params.MAX_N, max_images=MAX_IMAGES, edits=False),
                 "parameters": [openai_async.PREFER_HEADER]})
async def generations(request: Request, deps: DepsDep, who: RateLimitedPrincipal) -> Response:
    body = await json_body(request)
    if not isinstance(body, dict):
        raise ValidationFailed("The body must be a JSON object.", [FieldError("body", "Expected an object.")])
    asked = openai_params.to_task(body, deps.catalog)
    queued = openai_async.wanted(request, asked)  # only queued: never this process's worker at once
    with openai_params.in_openai_terms(asked.model):
        started = await start_tasks(deps, who, asked, [],
                                    worker=None if queued else request.app.state.worker)
    if queued:
        return openai_async.accepted(deps, request, started.tasks)
    if asked.stream:
        return openai_stream.streamed(deps, asked, started.ended(), started.tasks, "image_generation",
                                      lambda ran: _answer_body(deps, request, asked, ran, b64=True))
    return await _answer(deps, request, asked, await started.ended())


@router.post("/edits", summary="Edit images (OpenAI-compatible; multipart or JSON)",
             response_model=OpenAIImagesResponse, responses=_responses, openapi_extra={"requestBody": openai_bodies(
                 BUILTIN_CATALOG, openai_params.MODEL_ALIASES, DEFAULT_PROMPT_CAP, default_model="gpt-image-1.5",
                 ignored=openai_params.IGNORED, max_n=openai_params.MAX_N, max_images=MAX_IMAGES, edits=True),
                 "parameters": [openai_async.PREFER_HEADER]})
async def edits(request: Request, deps: DepsDep, who: RateLimitedPrincipal) -> Response:
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        refuse_declared_oversize(request)
        async with request.form(max_files=MAX_IMAGES + 1, max_fields=32) as form:
            fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
            refuse_unstorable(fields)
            parts = [v for k, v in form.multi_items() if k in ("image", "image[]") and isinstance(v, UploadFile)]
            if "mask" in form:
                raise openai_params.refused("mask", "Invalid value for 'mask': masks are not supported here; "
                                                    "describe the change in the prompt.")
            asked = openai_params.to_task(fields, deps.catalog, edit=True)
            queued = openai_async.wanted(request, asked)
            openai_params.check_images(asked.model, len(parts), "image", MAX_IMAGES)
            with openai_params.in_openai_terms(asked.model):
                stored = [await _spool_upload(deps, who.account_id, p, p.filename) for p in parts]
        images = "image"
    else:
        body = await json_body(request)
        if not isinstance(body, dict):
            raise ValidationFailed("The body must be a JSON object.", [FieldError("body", "Expected an object.")])
        asked = openai_params.to_task(body, deps.catalog, edit=True)
        queued = openai_async.wanted(request, asked)
        listed = body.get("images")
        count = len(listed) if isinstance(listed, list) else int(listed is not None)  # not a list: json_images says
        openai_params.check_images(asked.model, count, "images", MAX_IMAGES)
        with openai_params.in_openai_terms(asked.model, images="images"):
            stored = await json_images(deps, who.account_id, listed)
        images = "images"
    references = [{k: v for k, v in file_view(deps, request, s).items() if k in ("url", "kind", "name", "mimeType")}
                  for s in stored]
    with openai_params.in_openai_terms(asked.model, images=images):
        started = await start_tasks(deps, who, asked, references,
                                    worker=None if queued else request.app.state.worker)
    if queued:
        return openai_async.accepted(deps, request, started.tasks)
    if asked.stream:
        return openai_stream.streamed(deps, asked, started.ended(), started.tasks, "image_edit",
                                      lambda ran: _answer_body(deps, request, asked, ran, b64=True))
    return await _answer(deps, request, asked, await started.ended())
