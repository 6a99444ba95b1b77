"""What the operator reads across accounts: tasks, and each upstream route's health."""

from __future__ import annotations

from typing import Any

from prometheus_client import generate_latest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sfumato.clock import iso_ms
from sfumato.db.models import Task
from sfumato.providers import health
from sfumato.providers.registry import ProviderRegistry
from sfumato.tasks import service
from sfumato.tasks.status import Status

RECENT_FAILURES = 5


async def list_tasks(
    session: AsyncSession, *, account_id: str | None = None, status: Status | None = None,
    model: str | None = None, cursor: str | None = None, limit: int = 20,
) -> tuple[list[Task], str | None]:
    """Every account's tasks (or one's), newest first, a page at a time."""
    return await service.task_page(session, account_id=account_id, status=status, model=model, cursor=cursor,
                                   limit=limit)


async def _recent_failures(session: AsyncSession, model: str) -> list[dict[str, Any]]:
    found = await session.execute(
        select(Task.id, Task.error, Task.finished_at).where(Task.model == model, Task.status == Status.FAILED.value)
        .order_by(Task.finished_at.desc()).limit(RECENT_FAILURES))
    return [{"task_id": task_id, "code": (error or {}).get("code"), "message": (error or {}).get("message"),
             "at": None if at is None else iso_ms(at)} for task_id, error, at in found]


async def providers(session: AsyncSession, registry: ProviderRegistry) -> list[dict[str, Any]]:
    """Per configured route: where it goes, whether it is live, its circuit and its attempts by
    outcome in **this** process (breakers live per process), and the model's latest failed
    tasks with their error codes (from the tasks table: every process's). A failed task
    records its error, not the route that failed it, so the failures are the model's."""
    seen = health.parse(generate_latest().decode())
    failures: dict[str, list[dict[str, Any]]] = {}
    counts = dict((await session.execute(
        select(Task.model, func.count()).where(Task.status == Status.FAILED.value).group_by(Task.model))).all())
    rows = []
    for status in registry.statuses():
        if status.model_id not in failures:
            failures[status.model_id] = await _recent_failures(session, status.model_id)
        route = seen.get((status.model_id, status.route.key))
        rows.append({
            "model": status.model_id, "route": status.route.key, "provider": status.route.provider,
            "upstream_model": status.route.upstream_model, "host": status.host, "live": status.live,
            "missing": status.missing,
            "circuit": status.state.value if status.state else (route.circuit if route else None),
            "attempts": dict(route.attempts) if route else {},
            "failed_tasks": int(counts.get(status.model_id, 0)),
            "recent_failures": failures[status.model_id],
        })
    return rows
