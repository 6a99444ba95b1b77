"""``GET /api/v1/tasks/{id}/events``: the task's status changes as server-sent events.

Each event is ``event: status`` with the task object as ``data`` and an ``id`` naming its phase
(1 queued, 2 running, 3 ended); the stream ends after the terminal event. A new stream starts
with the task's whole story so far; a client that reconnects with ``Last-Event-ID`` gets the
phases after it. Phases already past are rebuilt from the task's timestamps, so no change is
lost. A comment line every 15 s keeps proxies from closing
an idle stream. (A task put back in the queue after a worker crash stays ``running`` here: its
phase does not go backwards.)
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
from sfumato.api.routes.tasks import view
from sfumato.api.schemas import ErrorEnvelope, TaskView
from sfumato.clock import iso_ms
from sfumato.db.models import Task
from sfumato.deps import Deps
from sfumato.tasks import service
from sfumato.tasks.status import TERMINAL
from sfumato.tasks.watch import POLL_SECONDS

router = APIRouter(prefix="/api/v1/tasks", tags=["tasks"])
KEEPALIVE_SECONDS = 15.0
PHASE = {"queued": 1, "running": 2}


def phase(status: str) -> int:
    return PHASE.get(status, 3)


def _event(number: int, body: dict[str, Any]) -> str:
    return f"id: {number}\nevent: status\ndata: {json.dumps(body, separators=(',', ':'))}\n\n"


def _missed(task: Task, shape: TaskView, after: int) -> list[str]:
    """Events for the phases between ``after`` and the task's current one, rebuilt from its
    timestamps (their data is the task as it was then: no result yet)."""
    events = []
    current = shape.task(task)
    for number, status, at in ((1, "queued", task.created_at), (2, "running", task.started_at)):
        if after < number < phase(task.status) and at is not None:
            events.append(_event(number, {**current, "status": status, "result": None, "error": None,
                                          "final_credits": 0, "updated_at": iso_ms(at)}))
    return events


async def _stream(deps: Deps, shape: TaskView, account_id: str, task_id: str, after: int) -> AsyncIterator[str]:
    with deps.signals.watching(task_id) as changed:
        quiet = 0.0
        while True:
            changed.clear()
            async with deps.db.read() as session:
                task = await service.get_task(session, account_id, task_id)
            if phase(task.status) > after:
                for missed in _missed(task, shape, after):
                    yield missed
                after = phase(task.status)
                quiet = 0.0
                yield _event(after, shape.task(task))
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
    responses={200: {"content": {"text/event-stream": {}}, "description": "status events until the task ends"},
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
        _stream(deps, view(deps, request), who.account_id, task_id, min(after, 3)),
        media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
