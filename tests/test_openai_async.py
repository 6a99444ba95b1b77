"""``Prefer: respond-async`` on the OpenAI-compatible door, driven by the official ``openai`` SDK
(``with_raw_response`` and ``extra_headers``) against the app on loopback: ``202`` at once with
the task object exactly as ``GET /api/v1/tasks/{id}`` serves it and ``Location`` naming it; the
task is only queued (the in-process worker's shortcut is not taken) and then runs and is charged
as any task; ``n`` > 1 answers the tasks as a page; ``stream: true`` with it is a ``400``."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

from sfumato.api.surfaces.openai_async import respond_async
from sfumato.deps import Deps
from tests.conftest import new_customer
from tests.money import audit
from tests.test_client import live

ASYNC = {"Prefer": "respond-async"}


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), "orange").save(buffer, "PNG")
    return buffer.getvalue()


async def _served(http: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    answer = await http.get(f"/api/v1/tasks/{task_id}")
    assert answer.status_code == 200
    served: dict[str, Any] = answer.json()
    return served


async def test_respond_async_answers_202_with_the_task_the_task_api_serves(make_deps: Callable[..., Any]) -> None:
    deps: Deps = await make_deps(run_worker=False)  # nothing runs it: the task stays as created
    who = await new_customer(deps, credits=100)
    async with live(deps) as url, httpx.AsyncClient(base_url=url, headers=who.headers, timeout=30) as http:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=who.api_key, max_retries=0, timeout=30)
        raw = await client.images.with_raw_response.generate(model="gpt-image-1.5", prompt="a fox", quality="high",
                                                             extra_headers=ASYNC)
        task = raw.http_response.json()
        assert raw.status_code == 202 and raw.headers["location"] == f"/api/v1/tasks/{task['id']}"
        assert raw.headers["preference-applied"] == "respond-async"
        assert task == await _served(http, task["id"])
        assert (task["status"], task["model"], task["reserved_credits"], task["result"]) == (
            "queued", "gpt-image-1-5", 4, None)
        edit = await client.images.with_raw_response.edit(model="qwen-image", prompt="ink it",
                                                          image=("in.png", _png(), "image/png"), extra_headers=ASYNC)
        edited = edit.http_response.json()
        assert edit.status_code == 202 and edit.headers["location"] == f"/api/v1/tasks/{edited['id']}"
        assert edited == await _served(http, edited["id"]) and edited["status"] == "queued"
        await client.close()
    books = await audit(deps, who.account_id)
    assert (books.held, books.statuses["queued"]) == (8, 2)  # reserved as any task


async def test_the_async_task_is_queued_for_the_workers_then_runs_and_is_charged(
        make_deps: Callable[..., Any]) -> None:
    """With a worker in this process and a slot free, a waiting request is handed to it already
    running; an async one is created queued, as ``POST /api/v1/tasks`` creates it."""
    deps: Deps = await make_deps(sandbox_latency_ms="20")
    who = await new_customer(deps, credits=100)
    async with live(deps) as url, httpx.AsyncClient(base_url=url, headers=who.headers, timeout=30) as http:
        answer = await http.post("/v1/images/generations", headers={"Prefer": "wait=5, respond-async"},
                                 json={"model": "gpt-image-1.5", "prompt": "a fox", "size": "1536x1024"})
        assert answer.status_code == 202 and answer.json()["status"] == "queued"
        location = answer.headers["location"]
        for _ in range(200):
            task = (await http.get(location)).json()
            if task["status"] not in ("queued", "running"):
                break
            await asyncio.sleep(0.05)
    assert task["status"] == "succeeded" and task["final_credits"] == 4
    [media] = task["result"]["media"]
    assert (media["width"], media["height"]) == (1536, 1024)
    books = await audit(deps, who.account_id)
    assert (books.spent, books.held) == (4, 0)


async def test_n_images_answer_their_tasks_as_a_page(make_deps: Callable[..., Any]) -> None:
    deps: Deps = await make_deps(run_worker=False)
    who = await new_customer(deps, credits=100)
    async with live(deps) as url, httpx.AsyncClient(base_url=url, headers=who.headers, timeout=30) as http:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=who.api_key, max_retries=0, timeout=30)
        raw = await client.images.with_raw_response.generate(model="qwen-image", prompt="two foxes", n=2,
                                                             extra_headers={"prefer": "RESPOND-ASYNC"})
        page = raw.http_response.json()
        assert raw.status_code == 202 and "location" not in raw.headers
        assert (len(page["data"]), page["next_cursor"], page["has_more"]) == (2, None, False)
        assert [await _served(http, t["id"]) for t in page["data"]] == page["data"]
        await client.close()
    assert (await audit(deps, who.account_id)).held == 8


async def test_stream_with_respond_async_is_refused_before_anything_is_reserved(
        make_deps: Callable[..., Any]) -> None:
    deps: Deps = await make_deps(run_worker=False)
    who = await new_customer(deps, credits=100)
    async with live(deps) as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=who.api_key, max_retries=0, timeout=30)
        with pytest.raises(openai.BadRequestError) as both:
            await client.images.generate(model="gpt-image-1.5", prompt="a fox", stream=True, extra_headers=ASYNC)
        with pytest.raises(openai.BadRequestError) as edit_both:
            await client.images.edit(model="gpt-image-1.5", prompt="a fox", image=("in.png", _png(), "image/png"),
                                     stream=True, extra_headers=ASYNC)
        await client.close()
    for refused in (both.value, edit_both.value):
        assert (refused.param, refused.code) == ("stream", "invalid_value")
        assert refused.body["message"] == ("Invalid value for 'stream': true with 'Prefer: respond-async'. "  # type: ignore[index]
                                           "Ask for one: the image event stream on this connection, or a task to "
                                           "poll.")
    books = await audit(deps, who.account_id)
    assert books.balance == 100 and not books.statuses


@pytest.mark.parametrize(("prefer", "wanted"), [
    ("respond-async", True), ("Respond-Async", True), ("wait=10, respond-async", True),
    ("respond-async; foo=bar", True), ("wait=10", False), (None, False), ("respond-asyncs", False), ("", False)])
def test_the_prefer_header_is_read_as_rfc_7240_writes_it(prefer: str | None, wanted: bool) -> None:
    assert respond_async(prefer) is wanted


async def test_the_openapi_document_describes_the_202_and_the_header(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    for path in ("/v1/images/generations", "/v1/images/edits"):
        operation = document["paths"][path]["post"]
        accepted = operation["responses"]["202"]
        assert set(accepted["headers"]) == {"Location", "Preference-Applied"}
        assert accepted["content"]["application/json"]["schema"]["anyOf"] == [
            {"$ref": "#/components/schemas/TaskOut"}, {"$ref": "#/components/schemas/TaskPage"}]
        assert [p["name"] for p in operation["parameters"]] == ["Prefer"]
