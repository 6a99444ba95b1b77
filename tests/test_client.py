"""``sfumato.Client`` and ``sfumato.AsyncClient`` against a real server on a loopback port.

The server runs in the test's event loop (uvicorn); the blocking client runs in a thread so
that it never blocks the loop serving it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from PIL import Image

import sfumato
from sfumato.app import create_app
from sfumato.client import APIError, AsyncClient, Client, SfumatoClientError, Task, TaskFailed, WaitTimeout
from sfumato.deps import Deps
from tests.conftest import Customer, new_customer


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


@contextlib.asynccontextmanager
async def live(deps: Deps) -> AsyncIterator[str]:
    """The whole app (lifespan and in-process worker included) on 127.0.0.1; yields its URL."""
    config = uvicorn.Config(create_app(deps=deps), host="127.0.0.1", port=0, lifespan="on", log_level="critical",
                            timeout_graceful_shutdown=2)
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


def png(width: int = 64, height: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "teal").save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
async def server(make_deps: Callable[..., Any]) -> AsyncIterator[tuple[str, Customer, Deps]]:
    deps = await make_deps(sandbox_latency_ms="50")
    who = await new_customer(deps, credits=40)
    async with live(deps) as url:
        yield url, who, deps


async def test_the_blocking_client_generates_uploads_chains_and_downloads(
    server: tuple[str, Customer, Deps], tmp_path: Path
) -> None:
    url, who, _ = server

    def session() -> tuple[Task, Task, bytes, int, list[str]]:
        updates: list[str] = []
        with sfumato.Client(url, api_key=who.api_key) as client:
            assert {m.id for m in client.models()} >= {"gpt-image-1-5", "qwen-image", "google-imagen4", "grok-imagine"}
            first = client.generate("qwen-image", "a lighthouse", {"image_size": "landscape_16_9"},
                                    on_update=lambda t: updates.append(t.status))
            assert first.result is not None
            data = client.download(first.result.media[0], tmp_path / "out.png")
            upload = client.upload(png(), "ref.png")
            edit = client.generate("gpt-image-1-5", "make it night", {
                "referenceMediaItems": [upload.as_reference(), first.result.media[0].as_reference()]})
            return first, edit, data, client.account().balance, updates

    first, edit, data, balance, updates = await asyncio.to_thread(session)
    assert (first.status, first.final_credits, updates[-1]) == ("succeeded", 4, "succeeded")
    assert updates[0] == "queued" and len(updates) >= 2
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (first.result.media[0].width, first.result.media[0].height)  # type: ignore[union-attr]
    assert (tmp_path / "out.png").read_bytes() == data
    assert edit.status == "succeeded" and balance == 40 - 4 - 4


async def test_errors_come_back_typed(server: tuple[str, Customer, Deps], make_deps: Callable[..., Any]) -> None:
    url, who, deps = server
    stranger = await new_customer(deps, credits=10, name="stranger")

    def session() -> tuple[APIError, APIError, APIError]:
        with Client(url, api_key=who.api_key) as client:
            with pytest.raises(APIError) as invalid:
                client.create("grok-imagine", "", {"enable_pro": True, "size": "big"})
            mine = client.create("qwen-image", "a fox")
        with Client(url, api_key=stranger.api_key) as other, pytest.raises(APIError) as foreign:
            other.get(mine.id)
        with Client(url, api_key="sk-sf_not-a-key") as nobody, pytest.raises(APIError) as unauthorized:
            nobody.account()
        return invalid.value, foreign.value, unauthorized.value

    invalid, foreign, unauthorized = await asyncio.to_thread(session)
    assert (invalid.status, invalid.code) == (422, "validation_failed")
    assert {d.field for d in invalid.details} == {"prompt", "params.enable_pro", "params.size"}
    assert invalid.request_id and "params.size" in str(invalid)
    assert (foreign.status, foreign.code) == (404, "not_found")
    assert unauthorized.status == 401


def test_a_missing_key_is_refused_before_any_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SFUMATO_API_KEY", raising=False)
    with pytest.raises(SfumatoClientError, match="SFUMATO_API_KEY"):
        Client("http://127.0.0.1:9")


async def test_the_async_client_waits_fails_cancels_and_times_out(make_deps: Callable[..., Any]) -> None:
    deps = await make_deps(sandbox_latency_ms="300", sandbox_failure_rate=1.0)
    who = await new_customer(deps, credits=40)
    async with live(deps) as url, AsyncClient(url, api_key=who.api_key) as client:
        with pytest.raises(TaskFailed) as failed:
            await client.generate("google-imagen4", "a fox", timeout=20)
        assert failed.value.task.status == "failed" and failed.value.task.error is not None
        queued = await client.create("qwen-image", "slow fox")
        with pytest.raises(WaitTimeout):
            await client.wait(queued, timeout=0.05)
        canceled = await client.cancel((await client.create("qwen-image", "another")).id)
        assert canceled.status in ("canceled", "running")
        ended = await client.wait(canceled.id, raise_on_failure=False, timeout=20)
        assert ended.status in ("canceled", "failed")
        assert (await client.wait(queued, raise_on_failure=False, timeout=20)).status == "failed"
        assert (await client.account()).balance == 40  # every failure and cancel refunded
        listed = await client.list(limit=5)
        assert {t.id for t in listed} >= {queued.id, canceled.id}
