"""``Prefer: respond-async`` (RFC 7240) on ``POST /v1/images/generations`` and ``/v1/images/edits``:
create and poll instead of holding a connection for minutes.

The request is checked and its tasks created exactly as without the header (reserved together,
the same credits), but only queued, for the workers, as ``POST /api/v1/tasks`` queues a task:
never handed to this process's worker at once, never waited for. The answer is ``202`` at once
with the task object, byte for byte what ``GET /api/v1/tasks/{id}`` serves (``view().task``),
``Location: /api/v1/tasks/{id}`` and ``Preference-Applied: respond-async``. With ``n`` > 1 it is
the ``n`` tasks as a page of ``GET /api/v1/tasks`` shows them (``{"data": [...]}``), and no
``Location``, there being no one task to name. ``stream: true`` asks for the opposite (the image
event stream on this connection): with ``respond-async`` it is a ``400`` naming ``stream``.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from sfumato.api.routes.tasks import view
from sfumato.api.schemas import TaskOut, TaskPage
from sfumato.api.surfaces.openai_params import OpenAIRequest, refused
from sfumato.deps import Deps
from sfumato.tasks.queries import AnyTask

PREFERENCE = "respond-async"
PREFER_HEADER: dict[str, Any] = {
    "name": "Prefer", "in": "header", "required": False,
    "description": "`respond-async`: answer `202` at once with the task (`GET /api/v1/tasks/{id}` follows it) "
                   "instead of waiting for the images; not with `stream: true`.",
    "schema": {"type": "string"},
}
RESPONSE: dict[str, Any] = {
    "model": TaskOut | TaskPage,
    "description": "With `Prefer: respond-async`: the task, queued, exactly as `GET /api/v1/tasks/{id}` serves it "
                   "(with `n` > 1, the `n` tasks as a page of `GET /api/v1/tasks`).",
    "headers": {
        "Location": {"description": "`/api/v1/tasks/{id}` of the task (one image only).",
                     "schema": {"type": "string"}},
        "Preference-Applied": {"description": "`respond-async`.", "schema": {"type": "string"}},
    },
}


def respond_async(prefer: str | None) -> bool:
    """Whether a ``Prefer`` header asks for ``respond-async`` (among other preferences, any case)."""
    return any(p.split(";", 1)[0].strip().lower() == PREFERENCE for p in (prefer or "").split(","))


def wanted(request: Request, asked: OpenAIRequest) -> bool:
    """Whether ``request`` asks to be answered asynchronously; a ``400`` when it also streams."""
    if not respond_async(request.headers.get("prefer")):
        return False
    if asked.stream:
        raise refused("stream", "Invalid value for 'stream': true with 'Prefer: respond-async'. Ask for one: the "
                                "image event stream on this connection, or a task to poll.")
    return True


def accepted(deps: Deps, request: Request, tasks: list[AnyTask]) -> JSONResponse:
    """``202`` with the task (or, ``n`` > 1, the tasks) as the task API shows them."""
    shape = view(deps, request)
    headers = {"Preference-Applied": PREFERENCE}
    if len(tasks) == 1:
        headers["Location"] = f"/api/v1/tasks/{tasks[0].id}"
        return JSONResponse(shape.task(tasks[0]), status_code=202, headers=headers)
    page = {"data": [shape.task(task) for task in tasks], "next_cursor": None, "has_more": False}
    return JSONResponse(page, status_code=202, headers=headers)
