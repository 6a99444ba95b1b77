"""OpenAI Images adapter against its loopback fake: wire shapes, sizes, errors, faults."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sfumato.providers.base import Outputs
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
