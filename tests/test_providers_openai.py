"""OpenAI Images adapter against its loopback fake: wire shapes, sizes, errors, faults."""

from __future__ import annotations

import base64
import dataclasses
import io
from collections.abc import AsyncIterator
from typing import Any

import pytest
from PIL import Image

from sfumato.catalog.options import RequestOptions
from sfumato.providers.base import Job, Outputs
from sfumato.providers.openai_images import SIZE
from tests.upstreams.harness import CATALOG, Sleeps, make_job, reference, route, routed, size_of
from tests.upstreams.matrix import FAULT_MATRIX, Expect, check, outcome
from tests.upstreams.openai import FakeOpenAI

KEY = "sk-test-openai"


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(KEY) as server:
        yield server


def openai_route(fake: FakeOpenAI, **extra: object):  # type: ignore[no-untyped-def]
    return route("openai", "gpt-image-1.5", f"{fake.url}/v1", **extra)


@pytest.mark.parametrize("aspect_ratio", ["1:1", "3:2", "2:3"])
@pytest.mark.parametrize("quality", ["medium", "high"])
async def test_generation_returns_the_upstream_pixel_size(fake: FakeOpenAI, aspect_ratio: str, quality: str) -> None:
    async with routed((openai_route(fake), KEY)) as provider:
        outputs = await provider.run(make_job("gpt-image-1-5", params={"aspect_ratio": aspect_ratio,
                                                                      "quality": quality}))
    [image] = outputs.images
    expected = CATALOG.get("gpt-image-1-5").output.sizes[aspect_ratio]  # type: ignore[union-attr]
    assert (image.width, image.height) == size_of(image.data) == expected
    assert image.mime_type == "image/png"
    [sent] = fake.requests
    assert sent == {"path": "generations", "model": "gpt-image-1.5", "prompt": "a red fox in fresh snow", "n": 1,
                    "size": SIZE[aspect_ratio], "quality": quality, "output_format": "png"}
    assert outputs.provider == "openai" and outputs.info["upstream_model"] == "gpt-image-1.5"
    assert fake.violations == []


async def test_edit_sends_one_image_part_per_reference_without_moderation(fake: FakeOpenAI) -> None:
    refs = (reference(fmt="png", index=0), reference(fmt="jpeg", index=1), reference(fmt="webp", index=2))
    async with routed((openai_route(fake), KEY)) as provider:
        outputs = await provider.run(make_job("gpt-image-1-5", params={"aspect_ratio": "2:3"}, refs=refs))
    assert (outputs.images[0].width, outputs.images[0].height) == (1024, 1536)
    [sent] = fake.requests
    assert sent["path"] == "edits"
    assert [p for p in sent["parts"] if p.startswith("image")] == ["image[]"] * 3
    assert "moderation" not in sent["parts"]
    assert [t for _, t in sent["files"]] == ["image/png", "image/jpeg", "image/webp"]
    assert (sent["model"], sent["size"], sent["n"]) == ("gpt-image-1.5", "1024x1536", "1")
    assert fake.violations == []


async def test_edit_takes_sixteen_references_and_no_route_serves_seventeen(fake: FakeOpenAI) -> None:
    async with routed((openai_route(fake), KEY)) as provider:
        await provider.run(make_job("gpt-image-1-5", refs=tuple(reference(index=i) for i in range(16))))
        with pytest.raises(Exception) as refused:
            await provider.run(make_job("gpt-image-1-5", refs=tuple(reference(index=i) for i in range(17))))
    assert getattr(refused.value, "code", None) == "no_route"
    assert fake.violations == [] and len(fake.requests) == 1


async def test_a_wrong_key_is_a_route_fault_and_not_retried(fake: FakeOpenAI) -> None:
    sleeps = Sleeps()
    async with routed((openai_route(fake), "sk-wrong"), sleep=sleeps) as provider:
        result = await outcome(provider, make_job("gpt-image-1-5"))
    assert not isinstance(result, Outputs) and result.code == "upstream_auth_failed"
    assert result.failover and sleeps.delays == [] and len(fake.served) == 1


async def test_a_safety_refusal_is_content_policy_and_final(fake: FakeOpenAI) -> None:
    sleeps = Sleeps()
    async with routed((openai_route(fake), KEY), sleep=sleeps) as provider:
        result = await outcome(provider, make_job("gpt-image-1-5", prompt="something forbidden"))
    assert not isinstance(result, Outputs) and result.code == "content_policy_violation"
    assert not result.failover and len(fake.served) == 1


@pytest.mark.parametrize("expect", FAULT_MATRIX, ids=lambda e: e.fault)
async def test_fault_matrix(fake: FakeOpenAI, expect: Expect) -> None:
    fake.inject(expect.fault, path="/images/generations")
    sleeps = Sleeps()
    async with routed((openai_route(fake, timeout_seconds=0.5), KEY), sleep=sleeps) as provider:
        result = await outcome(provider, make_job("gpt-image-1-5"))
    check(expect, result, sleeps)


async def test_a_persistent_server_error_fails_after_the_attempt_budget(fake: FakeOpenAI) -> None:
    fake.inject("500", times=100)
    sleeps = Sleeps()
    async with routed((openai_route(fake), KEY), sleep=sleeps) as provider:
        result = await outcome(provider, make_job("gpt-image-1-5"))
    assert not isinstance(result, Outputs) and result.code == "upstream_error"
    assert len(fake.served) == 3 and len(sleeps.delays) == 2


# --- request options (issue 16 part 0): what the fake received, and what came back -------------

PNG, JPEG = b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"


def is_webp(data: bytes) -> bool:
    return data[:4] == b"RIFF" and data[8:12] == b"WEBP"


def alpha_of(data: bytes) -> tuple[int, int] | None:
    """The (lowest, highest) alpha of the image, or None if it has no alpha channel."""
    with Image.open(io.BytesIO(data)) as image:
        return image.getchannel("A").getextrema() if "A" in image.getbands() else None  # type: ignore[return-value]


def with_options(job: Job, **options: Any) -> Job:
    return dataclasses.replace(job, options=RequestOptions(**options))


async def test_generation_sends_every_option_as_openai_names_it(fake: FakeOpenAI) -> None:
    job = with_options(make_job("gpt-image-1-5"), output_format="webp", output_compression=40, background="transparent",
                       moderation="low", user="end-user-7")
    async with routed((openai_route(fake), KEY)) as provider:
        [image] = (await provider.run(job)).images
    [sent] = fake.requests
    assert sent == {"path": "generations", "model": "gpt-image-1.5", "prompt": "a red fox in fresh snow", "n": 1,
                    "size": "1024x1024", "quality": "medium", "output_format": "webp", "output_compression": 40,
                    "background": "transparent", "moderation": "low", "user": "end-user-7"}
    assert is_webp(image.data) and image.mime_type == "image/webp"
    assert alpha_of(image.data) == (0, 255)  # a real alpha channel: clear ground, opaque subject
    assert fake.violations == []


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
async def test_compression_reaches_the_upstream_and_changes_the_size(fake: FakeOpenAI, fmt: str) -> None:
    sizes = {}
    async with routed((openai_route(fake), KEY)) as provider:
        for compression in (5, 95):
            job = with_options(make_job("gpt-image-1-5"), output_format=fmt, output_compression=compression)
            [image] = (await provider.run(job)).images
            assert (image.data.startswith(JPEG) if fmt == "jpeg" else is_webp(image.data))
            assert image.mime_type == f"image/{fmt}" and alpha_of(image.data) is None
            sizes[compression] = len(image.data)
    assert [(r["output_format"], r["output_compression"]) for r in fake.requests] == [(fmt, 5), (fmt, 95)]
    assert sizes[5] * 2 < sizes[95]


async def test_png_gets_no_compression_and_a_generation_no_input_fidelity(fake: FakeOpenAI) -> None:
    job = with_options(make_job("gpt-image-1-5"), output_compression=30, input_fidelity="high", background="opaque")
    async with routed((openai_route(fake), KEY)) as provider:
        [image] = (await provider.run(job)).images
    [sent] = fake.requests
    assert "output_compression" not in sent and "input_fidelity" not in sent  # the API has neither here
    assert (sent["output_format"], sent["background"]) == ("png", "opaque") and image.data.startswith(PNG)
    assert fake.violations == []


async def test_a_multipart_edit_carries_fidelity_user_format_and_compression(fake: FakeOpenAI) -> None:
    job = with_options(make_job("gpt-image-1-5", refs=(reference(), reference(fmt="webp", index=1))),
                       output_format="jpeg", output_compression=20, input_fidelity="high", user="u-2")
    async with routed((openai_route(fake), KEY)) as provider:
        [image] = (await provider.run(job)).images
    [sent] = fake.requests
    assert sent["path"] == "edits" and "json" not in sent
    assert {k: sent[k] for k in ("output_format", "output_compression", "input_fidelity", "user")} == {
        "output_format": "jpeg", "output_compression": "20", "input_fidelity": "high", "user": "u-2"}
    assert "moderation" not in sent["parts"] and image.data.startswith(JPEG)
    assert fake.violations == []


async def test_an_edit_asking_for_moderation_goes_as_the_json_edit_body(fake: FakeOpenAI) -> None:
    refs = (reference(fmt="png"), reference(fmt="jpeg", index=1))
    job = with_options(make_job("gpt-image-1-5", params={"aspect_ratio": "3:2"}, refs=refs), moderation="low",
                       background="transparent", input_fidelity="low", user="u-3")
    async with routed((openai_route(fake), KEY)) as provider:
        [image] = (await provider.run(job)).images
    [sent] = fake.requests
    assert (sent["path"], sent["json"], sent["moderation"], sent["input_fidelity"]) == ("edits", True, "low", "low")
    assert (sent["background"], sent["user"], sent["size"], sent["n"]) == ("transparent", "u-3", "1536x1024", 1)
    sent_images = [base64.b64decode(i["image_url"].split("base64,", 1)[1]) for i in sent["images"]]
    assert sent_images == [await r.load() for r in refs]
    assert [i["image_url"].split(";", 1)[0] for i in sent["images"]] == ["data:image/png", "data:image/jpeg"]
    assert image.data.startswith(PNG) and alpha_of(image.data) == (0, 255) and (image.width, image.height) == (
        1536, 1024)
    assert fake.violations == []
