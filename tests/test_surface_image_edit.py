"""The image-edit API of spec §8 at POST /api/v1/image/generation: the page's request works as
documented, every field and limit is checked, answers and errors use the page's envelope, the
task is usable with the task API, stream: true sends events, and credits go through the ledger."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse
from PIL import Image

from tests.conftest import Customer, new_customer, serve
from tests.money import audit

PATH = "/api/v1/image/generation"


def data_url(width: int = 40, height: int = 30) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "green").save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


async def _upload(client: httpx.AsyncClient, who: Customer) -> dict[str, Any]:
    raw = base64.b64decode(data_url().split(",", 1)[1])
    answer = await client.post("/api/v1/files", files={"file": ("a.png", raw, "image/png")}, headers=who.headers)
    return dict(answer.json())


async def test_the_pages_request_works_and_answers_in_its_envelope(make_deps: Callable[..., Any]) -> None:
    deps = await make_deps(sandbox_latency_ms="20")
    async with serve(deps) as client:
        who = await new_customer(deps, credits=50)
        uploaded = await _upload(client, who)
        # the page's minimal request: images, prompt, model
        raw = json.dumps({"images": [{"file_id": uploaded["id"]}, {"image_url": data_url()}],
                          "prompt": "make it night", "model": "gpt-image-1.5", "size": "1536x1024",
                          "quality": "high", "n": 2})
        answer = await client.post(PATH, headers={**who.headers, "Content-Type": "application/json"}, content=raw)
        body = answer.json()
        task = (await client.get(f"/api/v1/tasks/{body['data']['task_id']}", headers=who.headers)).json()
        again = (await client.get(f"{PATH}/{body['data']['task_id']}", headers=who.headers)).json()
        image = await client.get(body["data"]["urls"][0])
    assert answer.status_code == 200 and (body["code"], body["message"]) == (0, "success")
    assert set(body) == {"code", "data", "message", "request_id"} and body["request_id"].startswith("req_")
    data = body["data"]
    assert len(data["urls"]) == 2 and data["task_status"] == "succeeded" and data["expired"].endswith("Z")
    assert data["usage"]["images"] == 2 and set(data["usage"]) >= {"images", "seconds", "input_tokens",
                                                                     "total_tokens", "output_tokens"}
    assert task["status"] == "succeeded" and task["model"] == "gpt-image-1-5"
    assert again["data"]["task_status"] == "succeeded" and len(again["data"]["urls"]) == 1
    with Image.open(io.BytesIO(image.content)) as picture:
        assert picture.size == (1536, 1024)
    assert (await audit(deps, who.account_id)).balance == 50 - 2 * 4


@pytest.mark.parametrize(("change", "fields"), [
    ({"images": []}, {"images"}),
    ({"images": [{"file_id": "f", "image_url": "data:x"}]}, {"images[0]"}),
    ({"images": [{}] * 17}, {"images"}),
    ({"prompt": ""}, {"prompt"}), ({"prompt": "x" * 32001}, {"prompt"}),
    ({"model": "dall-e-3"}, {"model"}),
    ({"n": 0}, {"n"}), ({"n": 11}, {"n"}), ({"n": True}, {"n"}),
    ({"output_compression": 101}, {"output_compression"}), ({"partial_images": 4}, {"partial_images"}),
    ({"size": "512x512"}, {"size"}), ({"quality": "ultra"}, {"quality"}),
    ({"background": "glass"}, {"background"}), ({"input_fidelity": "mid"}, {"input_fidelity"}),
    ({"moderation": "high"}, {"moderation"}), ({"output_format": "gif"}, {"output_format"}),
    ({"stream": "yes"}, {"stream"}), ({"user": 7}, {"user"}), ({"colour": "red"}, {"colour"}),
    ({"output_format": "jpeg", "background": "transparent"}, {"background"}),  # jpeg has no alpha channel
    ({"output_compression": 50}, {"output_compression"}),  # png (the default) is lossless
    ({"input_fidelity": "high", "output_format": "bmp"}, {"output_format"}), ({"user": "u" * 513}, {"user"}),
    ({"n": 0, "size": "1x1", "model": "x"}, {"n", "size", "model"}),
])
async def test_every_rule_of_the_page_is_checked(make_deps: Callable[..., Any], change: dict[str, Any],
                                                  fields: set[str]) -> None:
    deps = await make_deps(run_worker=False)
    async with serve(deps) as client:
        who = await new_customer(deps, credits=50)
        body = {"images": [{"image_url": data_url()}], "prompt": "x", "model": "gpt-image-1.5", **change}
        answer = await client.post(PATH, json=body, headers=who.headers)
    payload = answer.json()
    assert answer.status_code == payload["code"] == 422 and payload["data"] is None
    assert all(f"{field}:" in payload["message"] for field in fields), payload["message"]
    assert (await audit(deps, who.account_id)).balance == 50  # nothing reserved


async def test_past_the_wait_the_task_goes_on_and_other_accounts_see_nothing(make_deps: Callable[..., Any]) -> None:
    deps = await make_deps(run_worker=False, max_prefer_wait_seconds=0)
    async with serve(deps) as client:
        who, other = await new_customer(deps), await new_customer(deps, name="other")
        body = {"images": [{"image_url": data_url()}], "prompt": "x", "model": "gpt-image-1.5"}
        started = (await client.post(PATH, json=body, headers=who.headers)).json()
        task_id = started["data"]["task_id"]
        mine = (await client.get(f"{PATH}/{task_id}", headers=who.headers)).json()
        foreign = (await client.get(f"{PATH}/{task_id}", headers=other.headers)).json()
        unauthorized = await client.post(PATH, json=body)
    assert (started["code"], started["data"]["task_status"], started["data"]["urls"]) == (0, "queued", [])
    assert mine["data"]["task_status"] == "queued"
    assert (foreign["code"], foreign["data"]) == (404, None)
    assert unauthorized.status_code == unauthorized.json()["code"] == 401


async def test_stream_true_sends_status_events_then_the_envelope(make_deps: Callable[..., Any]) -> None:
    deps = await make_deps(sandbox_latency_ms="100")
    async with serve(deps) as client:
        who = await new_customer(deps)
        body = {"images": [{"image_url": data_url()}], "prompt": "x", "model": "gpt-image-1.5", "stream": True}
        events = []
        async with aconnect_sse(client, "POST", PATH, json=body, headers=who.headers) as source:
            async for event in source.aiter_sse():
                events.append((event.event, json.loads(event.data)))
    assert [e for e, _ in events][-1] == "image_edit.completed"
    assert {d["task_status"] for e, d in events if e == "status"} >= {"succeeded"}
    final = events[-1][1]
    assert final["code"] == 0 and final["data"]["task_status"] == "succeeded" and len(final["data"]["urls"]) == 1


@pytest.mark.parametrize("count", [0, 1, 3])
async def test_stream_sends_the_asked_partial_images_before_the_final_envelope(
        make_deps: Callable[..., Any], count: int) -> None:
    deps = await make_deps(sandbox_latency_ms="80")
    async with serve(deps) as client:
        who = await new_customer(deps, credits=50)
        body = {"images": [{"image_url": data_url()}], "prompt": "x", "model": "gpt-image-1.5", "stream": True,
                "partial_images": count, "output_format": "webp", "size": "1536x1024"}
        events = []
        async with aconnect_sse(client, "POST", PATH, json=body, headers=who.headers) as source:
            async for event in source.aiter_sse():
                events.append((event.event, json.loads(event.data)))
        partials = [data for name, data in events if name == "image_edit.partial_image"]
        shown = [(await client.get(p["data"]["urls"][0])).content for p in partials]
    names = [name for name, _ in events if name != "status"]
    assert names == ["image_edit.partial_image"] * count + ["image_edit.completed"]
    assert [p["data"]["partial_image_index"] for p in partials] == list(range(count))
    assert all(p["code"] == 0 and p["message"] == "partial" and p["data"]["task_status"] == "running"
               for p in partials)
    for data in shown:
        with Image.open(io.BytesIO(data)) as image:
            assert (image.format, image.size) == ("WEBP", (1536, 1024))
    final = events[-1][1]["data"]
    assert final["task_status"] == "succeeded" and len(final["urls"]) == 1 and final["usage"]["images"] == 1
    assert (await audit(deps, who.account_id)).balance == 50 - 4  # previews are not billed
