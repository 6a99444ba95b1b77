"""Small test helpers shared by the API tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from sfumato.catalog import validate_task_request
from sfumato.deps import Deps
from sfumato.tasks import service
from sfumato.worker import lease
from tests.conftest import Customer

TERMINAL = {"succeeded", "failed", "canceled"}
T = TypeVar("T")


async def wait_for_task(
    client: httpx.AsyncClient, who: Customer, task_id: str, *, timeout: float = 15.0,
    until: set[str] | None = None,
) -> dict[str, Any]:
    """Poll until the task reaches one of ``until`` (default: a terminal state)."""
    wanted = until or TERMINAL
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        task: dict[str, Any] = (await client.get(f"/api/v1/tasks/{task_id}", headers=who.headers)).json()
        if task["status"] in wanted:
            return task
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"task {task_id} still {task['status']} after {timeout}s")
        await asyncio.sleep(0.02)


async def create(client: httpx.AsyncClient, who: Customer, **body: Any) -> httpx.Response:
    body.setdefault("prompt", "a red fox in fresh snow")
    return await client.post("/api/v1/tasks", json=body, headers=who.headers)


async def claimed_tasks(deps: Deps, account_id: str, n: int) -> list[lease.Claim]:
    """Create ``n`` tasks and claim them as a worker would (then never finish them)."""
    request = validate_task_request({"model": "qwen-image", "prompt": "x"}, deps.catalog, max_prompt_chars=100)
    for _ in range(n):
        async with deps.db.write() as session:
            await service.create_task(session, account_id, request, deps.clock.now(),
                                      idempotency_window=deps.idempotency_window)
    async with deps.db.write() as session:
        return await lease.claim(session, n, deps.clock.now(), deps.lease)


async def together(*calls: Callable[[], Awaitable[T]]) -> list[T]:
    """Start every call, park them all at one barrier, then release them at the same instant."""
    gate = asyncio.Event()

    async def one(call: Callable[[], Awaitable[T]]) -> T:
        await gate.wait()
        return await call()

    pending = [asyncio.create_task(one(call)) for call in calls]
    await asyncio.sleep(0)  # each task runs up to the gate first
    gate.set()
    return await asyncio.gather(*pending)
