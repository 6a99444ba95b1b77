"""Liveness, readiness and metrics: unauthenticated, for load balancers and Prometheus."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import func, select, text

from sfumato.api.dependencies import DepsDep
from sfumato.db.models import Task
from sfumato.metrics import QUEUE_DEPTH, QUEUED
from sfumato.tasks.status import Status

router = APIRouter(tags=["operations"])
CHECK_SECONDS = 2.0


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, Any]:
    return {"status": "ok"}


async def _database(deps: DepsDep) -> None:
    async with deps.db.read() as session:
        await session.execute(text("SELECT 1"))


async def _storage(deps: DepsDep) -> None:
    await deps.storage.check()


async def _redis(request: Request) -> None:
    await request.app.state.create_rate_limit.ping()


@router.get("/readyz", summary="Readiness: database, storage and (if configured) Redis answer",
            responses={503: {"description": "A dependency is not ready; `checks` says which."}})
async def readyz(request: Request, deps: DepsDep) -> JSONResponse:
    probes = {"database": _database(deps), "storage": _storage(deps)}
    if deps.settings.redis_url:
        probes["redis"] = _redis(request)
    checks: dict[str, str] = {}
    for name, probe in probes.items():
        try:
            await asyncio.wait_for(probe, CHECK_SECONDS)
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"failed: {exc.__class__.__name__}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ready else "not_ready", "checks": checks},
                        status_code=200 if ready else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {}}}})
async def metrics(deps: DepsDep) -> Response:
    async with deps.db.read() as session:
        rows = (await session.execute(
            select(Task.status, Task.model, Task.priority, func.count())
            .where(Task.status.in_([Status.QUEUED.value, Status.RUNNING.value]))
            .group_by(Task.status, Task.model, Task.priority)
        )).all()
    counts = dict.fromkeys((Status.QUEUED.value, Status.RUNNING.value), 0)
    QUEUED.clear()  # a model or priority with nothing queued any more reads as absent, not stale
    for status, model, priority, n in rows:
        counts[status] += n
        if status == Status.QUEUED.value:
            QUEUED.labels(model, priority).set(n)
    for status_name, n in counts.items():
        QUEUE_DEPTH.labels(status_name).set(n)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
