"""Following a task: the SSE stream (every status change, resumable with Last-Event-ID),
``Prefer: wait=N`` on create, and the Python client's wait riding on the stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse

from sfumato.client import AsyncClient
from sfumato.tasks import lifecycle
from sfumato.tasks.status import Status
from sfumato.worker import lease
from tests.conftest import new_customer, serve
from tests.helpers import create
from tests.test_client import live


async def _events(client: httpx.AsyncClient, path: str, headers: dict[str, str]) -> list[tuple[str, str]]:
    """The status events' ids and statuses."""
    return [(number, data["status"]) for number, kind, data in await _story(client, path, headers) if kind == "status"]


async def test_the_stream_shows_each_status_and_ends_with_the_terminal_one(make_deps: Callable[..., Any]) -> None:
    deps = await make_deps(sandbox_latency_ms="300")
    async with serve(deps) as client:
        who = await new_customer(deps)
        task = (await create(client, who, model="qwen-image")).json()
        seen = await asyncio.wait_for(_events(client, f"/api/v1/tasks/{task['id']}/events", who.headers), 20)
    assert seen == [("1", "queued"), ("2", "running"), ("3", "succeeded")]


async def test_a_reconnect_with_last_event_id_gets_what_it_missed(make_deps: Callable[..., Any]) -> None:
    deps = await make_deps(run_worker=False)
    async with serve(deps) as client:
        who = await new_customer(deps)
        task = (await create(client, who, model="qwen-image")).json()
        async with deps.db.write() as session:
            [claim] = await lease.claim(session, 1, deps.clock.now(), deps.lease)
        cancel = await client.post(f"/api/v1/tasks/{task['id']}/cancel", headers=who.headers)
        assert cancel.json()["status"] == "running"
        async with deps.db.write() as session:
            assert await lifecycle.cancel(session, claim.task_id, now=deps.clock.now(), source=(Status.RUNNING,),
                                          lease_token=claim.lease_token)
        path = f"/api/v1/tasks/{task['id']}/events"
        resumed = await _events(client, path, {**who.headers, "Last-Event-ID": "1"})
        fresh = await _events(client, path, who.headers)
        done = await _events(client, path, {**who.headers, "Last-Event-ID": "3"})
    assert resumed == [("2", "running"), ("3", "canceled")]
    assert fresh == [("1", "queued"), ("2", "running"), ("3", "canceled")]  # the whole story
    assert done == []


async def test_another_accounts_stream_is_not_found(make_deps: Callable[..., Any]) -> None:
    deps = await make_deps(run_worker=False)
    async with serve(deps) as client:
        who, other = await new_customer(deps), await new_customer(deps, name="other")
        task = (await create(client, who, model="qwen-image")).json()
        answer = await client.get(f"/api/v1/tasks/{task['id']}/events", headers=other.headers)
    assert (answer.status_code, answer.json()["error"]["code"]) == (404, "not_found")


@pytest.mark.parametrize(("latency", "wait", "status", "code"), [
    ("100", "wait=10", "succeeded", 200), ("3000", "wait=1", "queued|running", 202),
])
async def test_prefer_wait_answers_with_the_finished_task(
    make_deps: Callable[..., Any], latency: str, wait: str, status: str, code: int
) -> None:
    deps = await make_deps(sandbox_latency_ms=latency)
    async with serve(deps) as client:
        who = await new_customer(deps)
        answer = await client.post("/api/v1/tasks", json={"model": "qwen-image", "prompt": "a fox"},
                                   headers={**who.headers, "Prefer": f"respond-async, {wait}"})
    assert answer.status_code == code and answer.json()["status"] in status.split("|")
    assert answer.headers["Preference-Applied"] == wait
    if status == "succeeded":
        assert answer.json()["result"]["media"]


async def test_the_client_waits_on_the_stream(make_deps: Callable[..., Any]) -> None:
    deps = await make_deps(sandbox_latency_ms="200")
    who = await new_customer(deps)
    async with live(deps) as url, AsyncClient(url, api_key=who.api_key) as client:
        statuses: list[str] = []
        task = await client.generate("qwen-image", "a fox", on_update=lambda t: statuses.append(t.status), timeout=20)
    assert task.status == "succeeded" and statuses[-1] == "succeeded"


async def _story(client: httpx.AsyncClient, path: str, headers: dict[str, str], *, stop_at: str | None = None
                 ) -> list[tuple[str, str, dict[str, Any]]]:
    seen = []
    async with aconnect_sse(client, "GET", path, headers=headers) as source:
        assert source.response.headers["content-type"].startswith("text/event-stream")
        async for event in source.aiter_sse():
            seen.append((event.id, event.event, json.loads(event.data)))
            if event.event == stop_at:
                break  # the client goes away here
    return seen


async def test_previews_come_as_partial_events_while_it_runs_and_a_reconnect_loses_none(
        make_deps: Callable[..., Any]) -> None:
    """gpt-image-1-5's catalog default is two previews; the sandbox paces them through its
    latency. A client that drops after the first one and comes back with its id gets the rest."""
    deps = await make_deps(sandbox_latency_ms="900")
    who = await new_customer(deps)
    async with live(deps) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:  # a real stream
        task = (await create(client, who, model="gpt-image-1-5")).json()
        path = f"/api/v1/tasks/{task['id']}/events"
        first = await asyncio.wait_for(_story(client, path, who.headers, stop_at="partial"), 20)
        assert first[-1][2]["task_id"] == task["id"]
        running = (await client.get(f"/api/v1/tasks/{task['id']}", headers=who.headers)).json()
        rest = await asyncio.wait_for(_story(client, path, {**who.headers, "Last-Event-ID": first[-1][0]}), 20)
        previews = [data for _, event, data in first + rest if event == "partial"]
        pictures = [(await client.get(p["url"])).content for p in previews]
        final = (await client.get(rest[-1][2]["result"]["media"][0]["url"])).content
    assert running["status"] == "running"  # the first preview came before the end
    assert [(i, e) for i, e, _ in first] == [("1", "status"), ("2", "status"), ("3", "partial")]
    assert [(i, e) for i, e, _ in rest] == [("4", "partial"), ("5", "status")]
    assert rest[-1][2]["status"] == "succeeded" and len(rest[-1][2]["result"]["media"]) == 1
    assert [(p["index"], p["width"], p["height"], p["mimeType"]) for p in previews] == [
        (0, 1024, 1024, "image/png"), (1, 1024, 1024, "image/png")]
    assert len({*pictures, final}) == 3 and all(p.startswith(b"\x89PNG") for p in pictures)


async def test_a_model_without_previews_tells_only_its_statuses(make_deps: Callable[..., Any]) -> None:
    deps = await make_deps(sandbox_latency_ms="50")
    async with serve(deps) as client:
        who = await new_customer(deps)
        task = (await create(client, who, model="google-imagen4")).json()
        story = await asyncio.wait_for(_story(client, f"/api/v1/tasks/{task['id']}/events", who.headers), 20)
    assert [e for _, e, _ in story] == ["status"] * 3
