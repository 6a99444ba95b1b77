"""The task API end to end on the in-process server: spec §3 shape, life of a task, listing."""

from __future__ import annotations

import asyncio
import io
import re

import httpx
import pytest
from PIL import Image

from tests.conftest import Customer, new_customer
from tests.helpers import create, wait_for_task

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SEED_TASK_KEYS = {
    "id", "status", "model", "reserved_credits", "final_credits", "created_at", "updated_at", "result", "error",
}
TASK_KEYS = SEED_TASK_KEYS | {"priority", "started_at", "deadline_at"}
"""Spec §3's task object, plus what the queue adds (the fair-queue issue): only additions."""


async def test_create_returns_queued_task_with_reservation(client: httpx.AsyncClient, customer: Customer) -> None:
    response = await create(client, customer, model="gpt-image-1-5", params={"quality": "high"})
    assert response.status_code == 202
    task = response.json()
    assert set(task) == TASK_KEYS
    assert task["id"].startswith("task_")
    assert task["status"] == "queued"
    assert task["model"] == "gpt-image-1-5"
    assert (task["reserved_credits"], task["final_credits"]) == (4, 0)
    assert ISO_MS.match(task["created_at"]) and ISO_MS.match(task["updated_at"])
    assert task["result"] is None and task["error"] is None
    assert (task["priority"], task["started_at"], task["deadline_at"]) == ("normal", None, None)


@pytest.mark.parametrize(
    ("model", "params", "size", "mime"),
    [
        ("gpt-image-1-5", {"aspect_ratio": "3:2"}, (1536, 1024), "image/png"),
        ("qwen-image", {"image_size": "portrait_16_9", "output_format": "jpeg"}, (576, 1024), "image/jpeg"),
        ("google-imagen4", {"aspect_ratio": "16:9", "seed": "42"}, (1408, 768), "image/png"),
        ("grok-imagine", {"aspect_ratio": "9:16"}, (768, 1360), "image/jpeg"),
    ],
)
async def test_each_model_succeeds_with_the_upstream_pixel_size(
    client: httpx.AsyncClient, customer: Customer, model: str, params: dict[str, str],
    size: tuple[int, int], mime: str,
) -> None:
    created = (await create(client, customer, model=model, params=params)).json()
    task = await wait_for_task(client, customer, created["id"])
    assert task["status"] == "succeeded", task
    assert task["final_credits"] == task["reserved_credits"]
    assert task["result"]["sandbox"] is True and task["result"]["provider"] == "sandbox"
    [media] = task["result"]["media"]
    assert (media["kind"], media["mimeType"]) == ("image", mime)
    assert (media["width"], media["height"]) == size
    download = await client.get(media["url"])
    assert download.status_code == 200
    assert download.headers["content-type"] == mime
    assert len(download.content) == media["bytes"]
    image = Image.open(io.BytesIO(download.content))
    assert image.size == size
    assert Image.MIME[image.format] == mime


async def test_get_unknown_and_foreign_task_are_the_same_404(
    deps, client: httpx.AsyncClient, customer: Customer
) -> None:
    other = await new_customer(deps, name="other")
    mine = (await create(client, customer, model="qwen-image")).json()
    foreign = await client.get(f"/api/v1/tasks/{mine['id']}", headers=other.headers)
    unknown = await client.get("/api/v1/tasks/task_00000000000000000000000000000000", headers=other.headers)
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.json()["error"]["code"] == "not_found"
    strip = lambda r: {**r.json(), "request_id": None, "error": {**r.json()["error"], "message": None}}  # noqa: E731
    assert strip(foreign) == strip(unknown)
    listed = (await client.get("/api/v1/tasks", headers=other.headers)).json()
    assert listed["data"] == []


async def test_list_pages_newest_first_and_filters(deps, client: httpx.AsyncClient, customer: Customer) -> None:
    ids = []
    for model in ["qwen-image", "grok-imagine", "qwen-image", "google-imagen4", "qwen-image"]:
        ids.append((await create(client, customer, model=model)).json()["id"])
        await asyncio.sleep(0.002)  # times are kept to the millisecond; within one, order is by id
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/v1/tasks", params=params, headers=customer.headers)).json()
        seen += [t["id"] for t in page["data"]]
        cursor = page["next_cursor"]
        assert page["has_more"] == (cursor is not None)
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    qwen = (await client.get("/api/v1/tasks", params={"model": "qwen-image"}, headers=customer.headers)).json()
    assert [t["id"] for t in qwen["data"]] == [ids[4], ids[2], ids[0]]
    bad = await client.get("/api/v1/tasks", params={"cursor": "garbage"}, headers=customer.headers)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "validation_failed"
    bad_status = await client.get("/api/v1/tasks", params={"status": "done"}, headers=customer.headers)
    assert bad_status.status_code == 422


async def test_status_filter(client: httpx.AsyncClient, customer: Customer) -> None:
    first = (await create(client, customer, model="qwen-image")).json()
    await wait_for_task(client, customer, first["id"])
    done = (await client.get("/api/v1/tasks", params={"status": "succeeded"}, headers=customer.headers)).json()
    assert [t["id"] for t in done["data"]] == [first["id"]]
    queued = (await client.get("/api/v1/tasks", params={"status": "queued"}, headers=customer.headers)).json()
    assert queued["data"] == []
