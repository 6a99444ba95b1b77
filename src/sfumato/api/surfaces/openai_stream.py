"""OpenAI's image event stream on the OpenAI-compatible door (``stream: true``,
shared/upstreams.md §1.5), exactly as the official SDKs read it: a ``{kind}.partial_image``
event per preview the model streams (read back from the task's preview files as the worker
keeps them), then a ``{kind}.completed`` event per image, or one ``error`` event, which the
SDKs raise. ``kind`` is ``image_generation`` or ``image_edit``. A ``: keep-alive`` comment
every ``KEEPALIVE_SECONDS`` while nothing moves, so that proxies keep the stream open.

The tasks were created (and charged) before the stream began, so every refusal before that is
a plain HTTP error; a task that fails later is refunded as always and ends the stream with the
``error`` event.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from fastapi.responses import StreamingResponse

from sfumato.api.errors import openai_error
from sfumato.api.surfaces.openai_params import OpenAIRequest
from sfumato.deps import Deps
from sfumato.errors import SfumatoError
from sfumato.tasks import watch
from sfumato.tasks.queries import AnyTask

KEEPALIVE_SECONDS = 15.0
"""A comment line this often while the image is made, so that proxies keep the stream open."""
NO_USAGE = {"total_tokens": 0, "input_tokens": 0, "output_tokens": 0,
            "input_tokens_details": {"text_tokens": 0, "image_tokens": 0}}
"""OpenAI's usage block: sfumato charges credits, not tokens (the ledger has the charge)."""

Ended = TypeVar("Ended")
"""What the door waits on (its ``Ran``): handed back to its ``answer``."""


def streamed(deps: Deps, asked: OpenAIRequest, ended: Awaitable[Ended], tasks: list[AnyTask], kind: str,
             answer: Callable[[Ended], Awaitable[dict[str, Any]]]) -> StreamingResponse:
    """The stream for ``tasks``: their previews while they run (if ``partial_images`` asked for
    any), then the images of ``answer(await ended)`` (the door's answer body, images inline)."""
    async def events() -> AsyncIterator[str]:
        waiting = asyncio.ensure_future(ended)
        try:
            if asked.partial_images:
                async for text in _partials(deps, asked, kind, tasks):
                    yield text
            while not (await asyncio.wait({waiting}, timeout=KEEPALIVE_SECONDS))[0]:
                yield ": keep-alive\n\n"
            try:
                body = await answer(waiting.result())
            except SfumatoError as exc:
                error = openai_error(exc.status, exc.code, exc.message, exc.details)
                yield sse_event("error", {"type": "error", **error})
                return
            for item in body["data"]:
                yield sse_event(f"{kind}.completed", {
                    "type": f"{kind}.completed", "b64_json": item["b64_json"], "created_at": body["created"],
                    "size": body["size"], "quality": body["quality"], "background": body["background"],
                    "output_format": body["output_format"], "usage": NO_USAGE})
        finally:
            waiting.cancel()  # the client left: stop waiting (the task itself runs on and is charged as usual)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def sse_event(name: str, data: dict[str, Any]) -> str:
    """One server-sent event: its name and its JSON data on one line."""
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def _partials(deps: Deps, asked: OpenAIRequest, kind: str, tasks: list[AnyTask]) -> AsyncIterator[str]:
    """The tasks' previews as ``partial_image`` events while they run (keep-alive comments
    between), until each has ended."""
    for task in tasks:
        async for seen in watch.story(deps, task.account_id, task.id, idle_seconds=KEEPALIVE_SECONDS):
            if seen is None:
                yield ": keep-alive\n\n"
                continue
            for index, stored in enumerate(seen.previews, start=seen.first_index):
                data = await deps.storage.get(stored.storage_key)
                yield sse_event(f"{kind}.partial_image", {
                    "type": f"{kind}.partial_image", "b64_json": base64.b64encode(data).decode(),
                    "created_at": int(stored.created_at.timestamp()), "partial_image_index": index,
                    "size": asked.size or f"{stored.width}x{stored.height}",
                    "quality": asked.params.get("quality", "auto"), "background": asked.background,
                    "output_format": asked.output_format})
