"""``stream: true`` on the OpenAI-compatible door, driven by the official ``openai`` SDK: the
stream yields ``partial_images`` ``partial_image`` events as the previews are made, then one
``completed`` event per image with its bytes (generate and edit), a failed
task ends the stream with an error the SDK raises (and is refunded), the connection is kept
alive while the image is made, and bad stream fields are refused before anything is reserved.
On both databases."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

from sfumato.api.surfaces import openai_stream
from sfumato.deps import Deps
from tests.conftest import new_customer
from tests.money import audit
from tests.test_client import live


def _png(width: int = 40, height: int = 30) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "orange").save(buffer, "PNG")
    return buffer.getvalue()


def _size(b64: str) -> tuple[int, int]:
    with Image.open(io.BytesIO(base64.b64decode(b64))) as image:
        image.load()
        return image.size


async def test_the_sdk_streams_partial_images_then_the_completed_one_for_generate_and_edit(
        make_deps: Callable[..., Any]) -> None:
    deps: Deps = await make_deps(sandbox_latency_ms="60")
    who = await new_customer(deps, credits=100)
    async with live(deps) as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=who.api_key, max_retries=0, timeout=30)
        stream = await client.images.generate(model="gpt-image-1.5", prompt="a fox", size="1536x1024",
                                              stream=True, partial_images=2)
        events = [event async for event in stream]
        assert [e.type for e in events] == ["image_generation.partial_image"] * 2 + ["image_generation.completed"]
        assert [e.partial_image_index for e in events[:2]] == [0, 1]  # type: ignore[union-attr]
        assert all(_size(e.b64_json) == (1536, 1024) and e.output_format == "png" for e in events)
        assert len({e.b64_json for e in events}) == 3  # coarse, finer, the picture itself
        assert events[-1].usage is not None  # type: ignore[union-attr]
        edit = await client.images.edit(model="gpt-image-1.5", prompt="at night", image=("in.png", _png()),
                                        stream=True, partial_images=1, output_format="webp")
        edited = [event async for event in edit]
        assert [e.type for e in edited] == ["image_edit.partial_image", "image_edit.completed"]
        assert all(_size(e.b64_json) == (1024, 1024) and e.output_format == "webp" for e in edited)
        zero = await client.images.generate(model="gpt-image-1.5", prompt="a fox", stream=True, partial_images=0)
        assert [e.type async for e in zero] == ["image_generation.completed"]
        two = await client.images.generate(model="qwen-image", prompt="two foxes", n=2, stream=True)
        assert [e.type async for e in two] == ["image_generation.completed"] * 2
        await client.close()
    books = await audit(deps, who.account_id)
    assert books.statuses["succeeded"] == 5 and books.held == 0
    assert books.balance == 100 - 3 * 4 - 2 * deps.catalog.get("qwen-image").base_credits  # previews are free


async def test_previews_reach_the_client_while_the_image_is_still_being_made(make_deps: Callable[..., Any]) -> None:
    deps: Deps = await make_deps(sandbox_latency_ms="1500")
    who = await new_customer(deps, credits=100)
    body = {"model": "gpt-image-1.5", "prompt": "a fox", "stream": True, "partial_images": 2}
    arrived: list[tuple[str, float]] = []
    async with live(deps) as url, httpx.AsyncClient(base_url=url, timeout=30) as http, \
            http.stream("POST", "/v1/images/generations", headers=who.headers, json=body) as answer:
        async for line in answer.aiter_lines():
            if line.startswith("event: "):
                arrived.append((line.removeprefix("event: "), time.monotonic()))
    assert [name for name, _ in arrived] == ["image_generation.partial_image"] * 2 + ["image_generation.completed"]
    assert arrived[2][1] - arrived[0][1] > 0.3  # the sandbox paces them 0.5 s apart: not all at the end


async def test_a_failed_task_ends_the_stream_with_an_error_and_is_refunded(make_deps: Callable[..., Any]) -> None:
    deps: Deps = await make_deps(sandbox_latency_ms="10", sandbox_failure_rate="1.0")
    who = await new_customer(deps, credits=100)
    async with live(deps) as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=who.api_key, max_retries=0, timeout=30)
        stream = await client.images.generate(model="gpt-image-1.5", prompt="a fox", stream=True)
        with pytest.raises(openai.APIError, match=r"sandbox_failure|Simulated failure"):
            async for _ in stream:
                pass
        await client.close()
    books = await audit(deps, who.account_id)
    assert books.balance == 100 and books.statuses["failed"] == 1


async def test_the_stream_is_kept_alive_while_the_image_is_made(
        make_deps: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openai_stream, "KEEPALIVE_SECONDS", 0.05)
    deps: Deps = await make_deps(sandbox_latency_ms="400")
    who = await new_customer(deps, credits=100)
    body = {"model": "gpt-image-1.5", "prompt": "a fox", "stream": True}
    async with live(deps) as url, httpx.AsyncClient(base_url=url, timeout=30) as http, \
            http.stream("POST", "/v1/images/generations", headers=who.headers, json=body) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        lines = [line async for line in answer.aiter_lines()]
    assert lines.count(": keep-alive") >= 2
    assert lines.index("event: image_generation.completed") > lines.index(": keep-alive")


@pytest.mark.parametrize("fields", [{"stream": "yes"}, {"stream": 1}, {"partial_images": 4},
                                    {"partial_images": "-1"}, {"stream": True, "partial_images": 9}])
async def test_bad_stream_fields_are_refused_before_anything_is_reserved(
        make_deps: Callable[..., Any], fields: dict[str, Any]) -> None:
    deps: Deps = await make_deps(sandbox_latency_ms="10")
    who = await new_customer(deps, credits=100)
    async with live(deps) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        answer = await http.post("/v1/images/generations", headers=who.headers,
                                 json={"model": "gpt-image-1.5", "prompt": "a fox", **fields})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == ("partial_images" if "partial_images" in fields else "stream")
    assert (await audit(deps, who.account_id)).balance == 100


async def test_the_sdk_lists_and_retrieves_the_image_models(make_deps: Callable[..., Any]) -> None:
    deps: Deps = await make_deps(run_worker=False)
    who = await new_customer(deps)
    async with live(deps) as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=who.api_key, max_retries=0, timeout=30)
        listed = [m.id async for m in client.models.list()]
        assert set(deps.catalog.ids) | {"gpt-image-1.5"} == set(listed)
        assert (await client.models.retrieve("gpt-image-1.5")).id == "gpt-image-1.5"
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("dall-e-9")
        stranger = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="sk-wrong", max_retries=0, timeout=30)
        with pytest.raises(openai.AuthenticationError):
            await stranger.models.list()
        await client.close()
        await stranger.close()
