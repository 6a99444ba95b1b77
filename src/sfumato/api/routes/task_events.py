"""``GET /api/v1/tasks/{id}/events``: the task's story as server-sent events.

``event: status`` carries the task object at each phase (id 1 queued, 2 running); while it runs,
``event: partial`` carries each preview the upstream streamed (``index`` 0-based in arrival
order, a signed ``url``, ``width``, ``height``, ``mimeType``; ids 3, 4, …); the terminal status
event comes last, with the next id (3 + the number of previews). The stream ends after it. A
new stream starts with the whole story so far; a client that reconnects with
``Last-Event-ID`` gets what came after that id. Phases already past are rebuilt from the
task's timestamps and previews are read back from their files, so nothing is lost. A comment
line every 15 s keeps proxies from closing an idle stream. (A task put back in the queue after
a worker crash stays ``running`` here: its phase does not go backwards.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse

from sfumato.api.dependencies import DepsDep, PrincipalDep
from sfumato.api.routes.files import file_view
from sfumato.api.routes.tasks import view
from sfumato.api.schemas import ErrorEnvelope, TaskView
from sfumato.clock import iso_ms
from sfumato.db.models import StoredFile, Task
from sfumato.deps import Deps
from sfumato.files.previews import previews_of
from sfumato.tasks import service
from sfumato.tasks.status import TERMINAL
from sfumato.tasks.watch import POLL_SECONDS

router = APIRouter(prefix="/api/v1/tasks", tags=["tasks"])
KEEPALIVE_SECONDS = 15.0
PHASE = {"queued": 1, "running": 2}
FIRST_PREVIEW = 3


def phase(status: str) -> int:
    return PHASE.get(status, 3)


def _event(number: int, body: dict[str, Any], kind: str = "status") -> str:
    return f"id: {number}\nevent: {kind}\ndata: {json.dumps(body, separators=(',', ':'))}\n\n"


def story(deps: Deps, request: Request, task: Task, shape: TaskView, previews: list[StoredFile]
          ) -> list[tuple[int, str]]:
    """Every event of the task so far, in order, as ``(id, text)``: past phases rebuilt from its
    timestamps (their data is the task as it was then: no result yet), the previews, and the
    current phase or the end."""
    current = shape.task(task)
    now = phase(task.status)
    told: list[tuple[int, str]] = []
    for number, status, at in ((1, "queued", task.created_at), (2, "running", task.started_at)):
        if number < now and at is not None:
            told.append((number, _event(number, {**current, "status": status, "result": None, "error": None,
                                                 "final_credits": 0, "updated_at": iso_ms(at)})))
    if now < 3:
        told.append((now, _event(now, current)))
    for index, stored in enumerate(previews):
        shown = file_view(deps, request, stored)
        body = {"task_id": task.id, "index": index, "file_id": stored.id, "url": shown["url"],
                "width": stored.width, "height": stored.height, "mimeType": stored.mime_type}
        told.append((FIRST_PREVIEW + index, _event(FIRST_PREVIEW + index, body, "partial")))
    if now == 3:
        end = FIRST_PREVIEW + len(previews)
        told.append((end, _event(end, current)))
    return sorted(told, key=lambda item: item[0])


async def _stream(deps: Deps, request: Request, account_id: str, task_id: str, after: int) -> AsyncIterator[str]:
    shape = view(deps, request)
    with deps.signals.watching(task_id) as changed:
        quiet = 0.0
        while True:
            changed.clear()
            async with deps.db.read() as session:
                task = await service.get_task(session, account_id, task_id)
                previews = await previews_of(session, task_id) if task.started_at is not None else []
            sent = False
            for number, text in story(deps, request, task, shape, previews):
                if number > after:
                    after, sent = number, True
                    yield text
            if sent:
                quiet = 0.0
            if task.status in TERMINAL:
                return
            if quiet >= KEEPALIVE_SECONDS:
                quiet = 0.0
                yield ": keepalive\n\n"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), POLL_SECONDS)
            quiet += POLL_SECONDS


@router.get(
    "/{task_id}/events", summary="Follow a task (server-sent events)",
    responses={200: {"content": {"text/event-stream": {}},
                     "description": "status events, and partial events (previews) while it runs, until it ends"},
               401: {"model": ErrorEnvelope}, 404: {"model": ErrorEnvelope}},
)
async def task_events(
    task_id: str, request: Request, deps: DepsDep, who: PrincipalDep,
    last_event_id: str | None = Header(default=None, alias="Last-Event-ID", max_length=20),
) -> StreamingResponse:
    async with deps.db.read() as session:
        await service.get_task(session, who.account_id, task_id)  # 404 before the stream starts
    after = int(last_event_id) if last_event_id and last_event_id.isdigit() else 0
    return StreamingResponse(
        _stream(deps, request, who.account_id, task_id, after),
        media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
