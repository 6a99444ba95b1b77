"""``/api/v1/tasks``: create, get, list, cancel. Each route parses, calls one service, answers."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import WithJsonSchema

from sfumato import metrics
from sfumato.api.bodies import json_body
from sfumato.api.dependencies import DepsDep, PrincipalDep, RateLimitedPrincipal
from sfumato.api.request_schemas import BUILTIN_CATALOG, CURSOR, DEFAULT_PROMPT_CAP, task_create_body
from sfumato.api.schemas import ErrorEnvelope, QuoteOut, TaskOut, TaskPage, TaskView
from sfumato.catalog import validate_task_request
from sfumato.catalog.validate import TaskRequest
from sfumato.db.notify import CANCEL_REQUESTED, TASK_QUEUED, notify
from sfumato.deps import Deps
from sfumato.errors import FieldError, ValidationFailed
from sfumato.tasks import deadline, queries, quote, service, watch
from sfumato.tasks.status import TERMINAL, Status
from sfumato.webhooks.urls import destination_problem

# Routes return JSONResponse: the body is built by TaskView from our own rows, so FastAPI's
# re-validation against ``response_model`` (kept for the OpenAPI document) would be pure cost.
router = APIRouter(prefix="/api/v1/tasks", tags=["tasks"])

_errors: dict[int | str, dict[str, Any]] = {code: {"model": ErrorEnvelope} for code in (401, 404, 422)}


CANCEL_AFTER_PARAMETER = {
    "name": deadline.HEADER, "in": "header", "required": False,
    "description": "A deadline counted from creation (`30s`, `5m`, `1h30m`; a bare number is seconds): "
                   "not done by then, the task ends `canceled` with `deadline_exceeded`, refunded. "
                   "Format `sfumato-duration`: between SFUMATO_CANCEL_AFTER_MIN_SECONDS (5) and "
                   "SFUMATO_CANCEL_AFTER_MAX_SECONDS (86400) seconds; outside them, 422.",
    "schema": {"type": "string", "format": "sfumato-duration", "pattern": deadline.PATTERN,
               "maxLength": 40, "examples": ["30s", "5m"]},
}


def view(deps: Deps, request: Request) -> TaskView:
    base = deps.settings.public_url or str(request.base_url)
    return TaskView(deps.signer, base, timedelta(seconds=deps.settings.media_url_ttl_seconds), deps.clock.now())


@router.post(
    "",
    summary="Create a task",
    status_code=202,
    response_model=TaskOut,
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": task_create_body(BUILTIN_CATALOG, DEFAULT_PROMPT_CAP)}}},
        "parameters": [CANCEL_AFTER_PARAMETER, {
            "name": "Prefer", "in": "header", "required": False,
            "description": "`wait=N`: hold the answer up to N seconds (capped) for the task to end.",
            "schema": {"type": "string", "examples": ["wait=30"]},
        }]},
    responses={
        200: {"model": TaskOut, "description": "Replay: the task an earlier request with this client_request_id "
              "made; or, with `Prefer: wait=N`, the task once it ended within N seconds."},
        402: {"model": ErrorEnvelope}, 403: {"model": ErrorEnvelope}, 409: {"model": ErrorEnvelope},
        413: {"model": ErrorEnvelope},
        429: {"model": ErrorEnvelope}, **_errors,
    },
)
async def create_task(request: Request, deps: DepsDep, who: RateLimitedPrincipal) -> JSONResponse:
    task_request = await parse_create(request, deps)
    if service.is_plain(task_request):
        outcome = service.Created(await service.create_plain(deps.db.driver, who.account_id, task_request,
                                                             deps.clock.now(), deps.settings.low_priority_ageing,
                                                             api_key=who.key),
                                  created=True)
    else:
        async with deps.db.write() as session:
            outcome = await service.create_task(
                session, who.account_id, task_request, deps.clock.now(), idempotency_window=deps.idempotency_window,
                signer=deps.signer, ageing=deps.settings.low_priority_ageing, api_key=who.key,
            )
            if outcome.created:
                await notify(session, TASK_QUEUED)
    task = outcome.task
    if outcome.created:
        deps.signals.task_queued()
        metrics.TASKS_CREATED.labels(task.model).inc()
        metrics.CREDITS.labels("reserved").inc(task.reserved_credits)
    headers = {} if outcome.created else {"Idempotent-Replayed": "true"}
    wait = preferred_wait(request.headers.get("prefer"), deps.settings.max_prefer_wait_seconds)
    if wait:
        task = await watch.until_done(deps, who.account_id, task.id, wait, known=task if outcome.created else None)
        headers["Preference-Applied"] = f"wait={wait}"
    ended = task.status in TERMINAL
    status = 202 if outcome.created and not ended else 200
    return JSONResponse(view(deps, request).task(task), status_code=status, headers=headers)


async def parse_create(request: Request, deps: Deps) -> TaskRequest:
    """A create's body and headers as the normalised request, or the create's 422 (also a quote's)."""
    body = await json_body(request)
    task_request = validate_task_request(body, deps.catalog, max_prompt_chars=deps.settings.max_prompt_chars)
    if (header := request.headers.get(deadline.HEADER)) is not None:
        task_request = replace(task_request, cancel_after=deadline.cancel_after(
            header, least=deps.settings.cancel_after_min_seconds, most=deps.settings.cancel_after_max_seconds))
    if task_request.webhook_url and (refused := destination_problem(task_request.webhook_url,
                                                                     deps.settings.webhook_allow_private)):
        raise ValidationFailed(details=[FieldError("webhook_url", refused)])
    return task_request


def preferred_wait(prefer: str | None, cap: int) -> int:
    """Seconds asked for by ``Prefer: wait=N`` (RFC 7240), capped; 0 when not asked."""
    for preference in (prefer or "").replace(";", ",").split(","):
        name, _, value = preference.strip().partition("=")
        if name.strip().lower() == "wait" and value.strip().isdigit():
            return min(int(value.strip()), cap)
    return 0


@router.get("", summary="List tasks", response_model=TaskPage, responses=_errors)
async def list_tasks(
    request: Request, deps: DepsDep, who: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 20,
    cursor: Annotated[str | None, Query(max_length=500), WithJsonSchema(CURSOR)] = None,
    status: Status | None = None,
    model: Annotated[str | None, Query(max_length=64)] = None,
) -> JSONResponse:
    async with deps.db.read() as session:
        tasks, next_cursor = await service.list_tasks(
            session, who.account_id, limit=limit, cursor=cursor, status=status, model=model
        )
    shape = view(deps, request)
    page = [shape.task(t) for t in tasks]
    return JSONResponse({"data": page, "next_cursor": next_cursor, "has_more": next_cursor is not None})


@router.post(
    "/quote",
    summary="Price a task without creating it",
    response_model=QuoteOut,
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": task_create_body(BUILTIN_CATALOG, DEFAULT_PROMPT_CAP)}}},
        "parameters": [CANCEL_AFTER_PARAMETER]},
    responses={403: {"model": ErrorEnvelope}, 413: {"model": ErrorEnvelope}, **_errors},
)
async def quote_task(request: Request, deps: DepsDep, who: PrincipalDep) -> dict[str, Any]:
    """The body of a create: the model, the params as the task would keep them and the price a
    create would reserve, or the create's 422. Reserves nothing and writes nothing."""
    task_request = await parse_create(request, deps)
    async with deps.db.read() as session:
        found = await quote.quote(session, who.account_id, task_request, deps.clock.now(), deps.signer,
                                  api_key=who.key)
    return found.as_json()


@router.get("/{task_id}", summary="Get a task", response_model=TaskOut, responses=_errors)
async def get_task(task_id: str, request: Request, deps: DepsDep, who: PrincipalDep) -> JSONResponse:
    task = await queries.get_task(deps.db.driver, who.account_id, task_id)
    return JSONResponse(view(deps, request).task(task))


@router.post(
    "/{task_id}/cancel", summary="Cancel a task", response_model=TaskOut,
    responses={409: {"model": ErrorEnvelope}, **_errors},
)
async def cancel_task(task_id: str, request: Request, deps: DepsDep, who: PrincipalDep) -> JSONResponse:
    async with deps.db.read() as session:
        before = await service.get_task(session, who.account_id, task_id)
    was_queued = before.status == Status.QUEUED
    cancelable = deps.providers.for_model(before.model).supports_cancel
    async with deps.db.write() as session:
        task = await service.cancel_task(
            session, who.account_id, task_id, deps.clock.now(), running_cancelable=cancelable
        )
        if task.status == Status.RUNNING:
            await notify(session, CANCEL_REQUESTED, task.id)
    if task.status == Status.RUNNING:
        deps.signals.cancel_requested(task.id)
    elif was_queued and task.status == Status.CANCELED:
        metrics.task_ended(task.model, task.status, task.reserved_credits, 0)
    return JSONResponse(view(deps, request).task(task))
