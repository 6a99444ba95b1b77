"""Small test helpers shared by the API tests."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.conftest import Customer

TERMINAL = {"succeeded", "failed", "canceled"}


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
