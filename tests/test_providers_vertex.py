"""Vertex Imagen adapter against its loopback fake: the three ways in, seed + watermark, filters, faults."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sfumato.providers.base import Outputs
from tests.upstreams.harness import CATALOG, Sleeps, make_job, route, routed, size_of
from tests.upstreams.matrix import FAULT_MATRIX, Expect, check, outcome
from tests.upstreams.vertex import FakeVertex

MODEL = "imagen-4.0-generate-001"


@pytest.fixture
async def fake() -> AsyncIterator[FakeVertex]:
    async with FakeVertex() as server:
        yield server


@pytest.mark.parametrize("aspect_ratio", ["1:1", "16:9", "9:16", "3:4", "4:3"])
async def test_express_mode_maps_ratio_seed_and_negative_prompt(fake: FakeVertex, aspect_ratio: str) -> None:
    params = {"aspect_ratio": aspect_ratio, "seed": "42", "negative_prompt": "blurry"}
    async with routed((route("vertex", MODEL, fake.url), fake.api_key)) as provider:
        outputs = await provider.run(make_job("google-imagen4", params=params))
    [image] = outputs.images
    expected = CATALOG.get("google-imagen4").output.sizes[aspect_ratio]  # type: ignore[union-attr]
    assert (image.width, image.height) == size_of(image.data) == expected
    [sent] = fake.requests
    assert sent["api"] == "vertex" and sent["instances"] == [{"prompt": "a red fox in fresh snow"}]
    assert sent["parameters"] == {"sampleCount": 1, "aspectRatio": aspect_ratio, "outputOptions": {
        "mimeType": "image/png"}, "includeRaiReason": True, "negativePrompt": "blurry", "seed": 42,
        "addWatermark": False}
    assert fake.violations == []


async def test_no_seed_leaves_watermarking_alone(fake: FakeVertex) -> None:
    async with routed((route("vertex", MODEL, fake.url), fake.api_key)) as provider:
        await provider.run(make_job("google-imagen4"))
    assert "seed" not in fake.requests[0]["parameters"] and "addWatermark" not in fake.requests[0]["parameters"]


async def test_bearer_auth_uses_the_project_path(fake: FakeVertex) -> None:
    config = route("vertex", MODEL, fake.url, options={"auth": "bearer", "project_env": "PROJ", "location": "eu"})
    config = config.model_copy(update={"options": {"auth": "bearer", "project": "proj", "location": "eu"}})
    async with routed((config, fake.token)) as provider:
        outputs = await provider.run(make_job("google-imagen4", params={"seed": "7"}))
    assert len(outputs.images) == 1 and fake.violations == []


async def test_the_gemini_api_gets_no_vertex_only_parameters(fake: FakeVertex) -> None:
    config = route("vertex", MODEL, fake.url, options={"auth": "gemini"})
    async with routed((config, fake.api_key)) as provider:
        await provider.run(make_job("google-imagen4", params={"seed": "7", "negative_prompt": "x"}))
    assert fake.requests[0]["api"] == "gemini" and fake.violations == []
    assert {"seed", "negativePrompt", "addWatermark"}.isdisjoint(fake.requests[0]["parameters"])


async def test_everything_filtered_is_a_content_policy_violation(fake: FakeVertex) -> None:
    async with routed((route("vertex", MODEL, fake.url), fake.api_key)) as provider:
        result = await outcome(provider, make_job("google-imagen4", prompt="forbidden"))
    assert not isinstance(result, Outputs) and result.code == "content_policy_violation"
    assert "safety filter" in result.message


async def test_a_bad_token_is_an_auth_failure(fake: FakeVertex) -> None:
    async with routed((route("vertex", MODEL, fake.url), "nope")) as provider:
        result = await outcome(provider, make_job("google-imagen4"))
    assert not isinstance(result, Outputs) and result.code == "upstream_auth_failed"


@pytest.mark.parametrize("expect", FAULT_MATRIX, ids=lambda e: e.fault)
async def test_fault_matrix(fake: FakeVertex, expect: Expect) -> None:
    fake.inject(expect.fault)
    sleeps = Sleeps()
    async with routed((route("vertex", MODEL, fake.url, timeout_seconds=0.5), fake.api_key),
                      sleep=sleeps) as provider:
        result = await outcome(provider, make_job("google-imagen4"))
    check(expect, result, sleeps)
