"""Partial images from a streaming upstream (OpenAI's image event stream, shared/upstreams.md
§1.5), end to end: the adapter against its loopback fake (what it asks, what it reads, a stream
cut, dropped or ended by an error event), then the task engine over it, auditing the books
(previews are never billed, no charge without the final image, no refund twice) and the doors
that show the previews (task events, the official SDK through the OpenAI door)."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
from PIL import Image
from sqlalchemy import select

from sfumato.catalog.options import RequestOptions
from sfumato.db.models import StoredFile
from sfumato.deps import Deps
from sfumato.providers.base import OutputImage
from sfumato.providers.errors import UpstreamBadResponse
from sfumato.providers.sse import events
from tests.conftest import new_customer, serve
from tests.money import audit
from tests.test_client import live
from tests.upstreams.harness import make_job, reference, route, routed, size_of
from tests.upstreams.openai import FakeOpenAI

KEY = "sk-test-openai"


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(KEY) as server:
        yield server


def _route(fake: FakeOpenAI, attempts: int = 1):  # type: ignore[no-untyped-def]
    return route("openai", "gpt-image-1.5", f"{fake.url}/v1", retry={"max_attempts": attempts, "base_seconds": 0.01,
                                                                     "max_seconds": 0.02})


class Previews:
    def __init__(self) -> None:
        self.seen: list[tuple[int, OutputImage]] = []

    async def __call__(self, index: int, image: OutputImage) -> None:
        self.seen.append((index, image))


def _streaming(job: Any, count: int, sink: Previews, **options: Any) -> Any:
    import dataclasses
    return dataclasses.replace(job, partial_images=count, on_partial=sink,
                               options=RequestOptions(**options) if options else job.options)


# --- the adapter ------------------------------------------------------------------------------

@pytest.mark.parametrize("count", [1, 2, 3])
async def test_a_generation_asks_for_the_stream_and_hands_over_each_partial_image(fake: FakeOpenAI,
                                                                                  count: int) -> None:
    sink = Previews()
    async with routed((_route(fake), KEY)) as provider:
        outputs = await provider.run(_streaming(make_job("gpt-image-1-5", params={"aspect_ratio": "3:2"}), count,
                                                sink))
    [sent] = fake.requests
    assert sent["stream"] is True and sent["partial_images"] == count and sent["path"] == "generations"
    assert [index for index, _ in sink.seen] == list(range(count))
    assert all((image.width, image.height) == size_of(image.data) == (1536, 1024) for _, image in sink.seen)
    [final] = outputs.images
    assert (final.width, final.height) == (1536, 1024) and final.mime_type == "image/png"
    assert outputs.info["upstream_request_id"] == "req_fake" and fake.violations == []


async def test_a_multipart_edit_streams_with_stream_written_as_the_sdk_writes_it(fake: FakeOpenAI) -> None:
    sink = Previews()
    async with routed((_route(fake), KEY)) as provider:
        outputs = await provider.run(_streaming(make_job("gpt-image-1-5", refs=(reference(),)), 2, sink,
                                                output_format="webp"))
    [sent] = fake.requests
    assert sent["path"] == "edits" and (sent["stream"], sent["partial_images"]) == ("true", "2")
    assert len(sink.seen) == 2 and all(image.mime_type == "image/webp" for _, image in sink.seen)
    assert outputs.images[0].mime_type == "image/webp"


async def test_a_json_edit_streams_too(fake: FakeOpenAI) -> None:
    sink = Previews()
    async with routed((_route(fake), KEY)) as provider:
        await provider.run(_streaming(make_job("gpt-image-1-5", refs=(reference(),)), 1, sink, moderation="low"))
    [sent] = fake.requests
    assert sent.get("json") is True and sent["stream"] is True and sent["partial_images"] == 1
    assert len(sink.seen) == 1


async def test_no_partial_images_asked_means_no_stream(fake: FakeOpenAI) -> None:
    async with routed((_route(fake), KEY)) as provider:
        await provider.run(make_job("gpt-image-1-5"))
    [sent] = fake.requests
    assert "stream" not in sent and "partial_images" not in sent


@pytest.mark.parametrize(("fault", "code", "requests"), [
    ("cut", "upstream_unavailable", 3), ("drop", "upstream_unavailable", 3), ("error", "upstream_error", 3),
    ("refused", "content_policy_violation", 1)])
async def test_a_broken_stream_fails_the_way_its_cause_says(fake: FakeOpenAI, fault: str, code: str,
                                                            requests: int) -> None:
    """Cut or dropped before ``completed``, or an error event: retried (a transient failure);
    a refusal sent as an error event: not retried, whatever route."""
    fake.stream_fault = fault
    sink = Previews()
    async with routed((_route(fake, attempts=3), KEY)) as provider:
        with pytest.raises(Exception) as failed:
            await provider.run(_streaming(make_job("gpt-image-1-5"), 2, sink))
    assert getattr(failed.value, "code", None) == code, failed.value
    assert len(fake.requests) == requests
    assert sink.seen  # previews came before the stream broke


class _Chunks:
    """Stands in for ``aiohttp.ClientResponse.content``: the given chunks, as they arrive."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def iter_any(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


class _Response:
    def __init__(self, chunks: list[bytes]) -> None:
        self.content = _Chunks(chunks)


async def test_the_event_reader_takes_lines_cut_anywhere_and_caps_an_event() -> None:
    big = "x" * 300_000  # one data line over aiohttp's 128 KiB readline limit
    wire = (f": comment\r\nevent: a\r\ndata: {big}\r\n\r\nid: 7\ndata: one\ndata: two\n\nevent: cut\ndata: lost"
            ).encode()
    chunks = [wire[i:i + 7777] for i in range(0, len(wire), 7777)]
    got = [(e.event, e.data) async for e in events(_Response(chunks), 1_000_000)]  # type: ignore[arg-type]
    assert got == [("a", big), ("message", "one\ntwo")]  # the unterminated last event is dropped
    with pytest.raises(UpstreamBadResponse):
        [e async for e in events(_Response(chunks), 100_000)]  # type: ignore[arg-type]


# --- through the task engine -----------------------------------------------------------------

async def _previews(deps: Deps, task_id: str) -> list[StoredFile]:
    async with deps.db.read() as session:
        return list(await session.scalars(select(StoredFile).where(StoredFile.task_id == task_id,
                                                                   StoredFile.purpose == "preview")))


def _sse(text: str) -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if "event" in fields:
            found.append((fields.get("id", ""), fields["event"], json.loads(fields["data"])))
    return found


async def test_a_task_api_task_asks_for_the_catalog_default_and_shows_each_preview_as_an_event(
        upstream: tuple[FakeOpenAI, Deps]) -> None:
    fake, deps = upstream
    default = deps.catalog.get("gpt-image-1-5").partial_images  # type: ignore[union-attr]
    assert default == 2
    async with serve(deps) as client:
        who = await new_customer(deps, credits=20)
        created = (await client.post("/api/v1/tasks", headers={**who.headers, "Prefer": "wait=20"}, json={
            "model": "gpt-image-1-5", "prompt": "a fox", "params": {"aspect_ratio": "2:3"}})).json()
        assert created["status"] == "succeeded", created
        story = _sse((await client.get(f"/api/v1/tasks/{created['id']}/events", headers=who.headers)).text)
        partial = [data for _, event, data in story if event == "partial"]
        assert [event_id for event_id, _, _ in story] == ["1", "2", "3", "4", "5"]
        assert [event for _, event, _ in story] == ["status", "status", "partial", "partial", "status"]
        assert [p["index"] for p in partial] == [0, 1]
        assert all((p["width"], p["height"], p["mimeType"]) == (1024, 1536, "image/png") for p in partial)
        shown = await client.get(partial[0]["url"])
        assert shown.status_code == 200 and size_of(shown.content) == (1024, 1536)
        again = _sse((await client.get(f"/api/v1/tasks/{created['id']}/events",
                                       headers={**who.headers, "Last-Event-ID": "3"})).text)
        assert [(event_id, event) for event_id, event, _ in again] == [("4", "partial"), ("5", "status")]
        media = created["result"]["media"]
        assert len(media) == 1 and not any(p["file_id"] in media[0]["url"] for p in partial)
    [sent] = fake.requests
    assert sent["stream"] is True and sent["partial_images"] == default
    assert len(await _previews(deps, created["id"])) == 2
    books = await audit(deps, who.account_id)
    assert books.balance == 20 - 4 and books.statuses["succeeded"] == 1  # the previews cost nothing


@pytest.mark.parametrize("fault", ["cut", "drop", "error", "refused"])
async def test_a_stream_that_breaks_after_previews_charges_nothing_and_refunds_once(
        upstream: tuple[FakeOpenAI, Deps], fault: str) -> None:
    fake, deps = upstream
    fake.stream_fault = fault
    async with serve(deps) as client:
        who = await new_customer(deps, credits=20)
        ended = (await client.post("/api/v1/tasks", headers={**who.headers, "Prefer": "wait=20"}, json={
            "model": "gpt-image-1-5", "prompt": "a fox"})).json()
        assert ended["status"] == "failed", ended
        assert ended["error"]["code"] == {"refused": "content_policy_violation", "error": "upstream_error"}.get(
            fault, "upstream_unavailable")
        story = _sse((await client.get(f"/api/v1/tasks/{ended['id']}/events", headers=who.headers)).text)
        assert "partial" in [event for _, event, _ in story] and story[-1][2]["status"] == "failed"
        canceled = await client.post(f"/api/v1/tasks/{ended['id']}/cancel", headers=who.headers)
        assert canceled.status_code == 409  # ended: nothing more to refund
    books = await audit(deps, who.account_id)
    assert books.balance == 20 and books.kinds["release"] == 1 and books.statuses["failed"] == 1


async def test_the_official_sdk_streams_the_upstream_previews_and_a_mid_stream_failure_is_an_error(
        upstream: tuple[FakeOpenAI, Deps]) -> None:
    fake, deps = upstream
    who = await new_customer(deps, credits=20)
    async with live(deps) as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=who.api_key, max_retries=0, timeout=30)
        stream = await client.images.generate(model="gpt-image-1.5", prompt="a fox", stream=True, partial_images=3,
                                              output_format="jpeg", output_compression=40)
        got = [event async for event in stream]
        assert [e.type for e in got] == ["image_generation.partial_image"] * 3 + ["image_generation.completed"]
        for event in got:
            with Image.open(io.BytesIO(base64.b64decode(event.b64_json))) as image:
                assert image.format == "JPEG" and image.size == (1024, 1024)
        fake.stream_fault = "error"
        broken = await client.images.generate(model="gpt-image-1.5", prompt="a fox", stream=True, partial_images=2)
        seen = []
        with pytest.raises(openai.APIError, match=r"upstream_error|OpenAI"):
            async for event in broken:
                seen.append(event.type)
        assert seen == ["image_generation.partial_image"]
        await client.close()
    streamed = [r for r in fake.requests if r["path"] == "generations"]
    assert [(r["stream"], r["partial_images"]) for r in streamed] == [(True, 3), (True, 2)]
    books = await audit(deps, who.account_id)
    assert books.balance == 20 - 4 and books.statuses == {"succeeded": 1, "failed": 1}


async def test_a_door_that_does_not_stream_asks_the_upstream_for_no_previews(
        upstream: tuple[FakeOpenAI, Deps]) -> None:
    fake, deps = upstream
    who = await new_customer(deps, credits=20)
    async with live(deps) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        answer = await http.post("/v1/images/generations", headers=who.headers,
                                 json={"model": "gpt-image-1.5", "prompt": "a fox"})
        assert answer.status_code == 200, answer.text
    [sent] = fake.requests
    assert "stream" not in sent and "partial_images" not in sent
