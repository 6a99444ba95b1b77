"""Vertex Imagen adapter against its loopback fake: the three ways in, the host per location,
seed + watermark, negative_prompt per model, filters, faults."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from sfumato.providers.base import Outputs
from sfumato.providers.factory import live_route
from sfumato.providers.http import MAX_JSON_BYTES, Answer, UpstreamHttp
from sfumato.providers.router import LiveRoute, RoutedProvider
from sfumato.providers.routes import Route
from tests.upstreams.harness import CATALOG, Sleeps, make_job, route, routed, size_of
from tests.upstreams.matrix import FAULT_MATRIX, Expect, check, outcome
from tests.upstreams.vertex import FakeVertex

MODEL = "imagen-4.0-generate-001"


class GoogleOnLoopback(UpstreamHttp):
    """Sends requests for Google's hosts to the fake instead (DNS and TLS are the edge of the
    world here), keeping the host the adapter chose in ``Host`` for the fake to check."""

    def __init__(self, fake_url: str):
        super().__init__()
        self.fake_url = fake_url

    async def request(self, method: str, url: str, *, time_limit: float, max_bytes: int = MAX_JSON_BYTES,
                      **kwargs: Any) -> Answer:
        parts = urlsplit(url)
        assert parts.scheme == "https" and parts.netloc.endswith(".googleapis.com"), url
        headers = {**kwargs.pop("headers", {}), "Host": parts.netloc}
        return await super().request(method, self.fake_url + parts.path, time_limit=time_limit, max_bytes=max_bytes,
                                     headers=headers, **kwargs)


@pytest.fixture
async def fake() -> AsyncIterator[FakeVertex]:
    async with FakeVertex() as server:
        yield server


@pytest.mark.parametrize("aspect_ratio", ["1:1", "16:9", "9:16", "3:4", "4:3"])
async def test_express_mode_maps_ratio_and_seed_and_withholds_negative_prompt_from_imagen4(
    fake: FakeVertex, aspect_ratio: str
) -> None:
    params = {"aspect_ratio": aspect_ratio, "seed": "42", "negative_prompt": "blurry"}
    async with routed((route("vertex", MODEL, fake.url), fake.api_key)) as provider:
        outputs = await provider.run(make_job("google-imagen4", params=params))
    [image] = outputs.images
    expected = CATALOG.get("google-imagen4").output.sizes[aspect_ratio]  # type: ignore[union-attr]
    assert (image.width, image.height) == size_of(image.data) == expected
    [sent] = fake.requests
    assert sent["api"] == "vertex" and sent["instances"] == [{"prompt": "a red fox in fresh snow"}]
    assert sent["parameters"] == {"sampleCount": 1, "aspectRatio": aspect_ratio, "outputOptions": {
        "mimeType": "image/png"}, "includeRaiReason": True, "seed": 42, "addWatermark": False}
    [note] = outputs.info["notes"]
    assert note.startswith("negative_prompt was not sent") and MODEL in note
    assert fake.violations == []


async def test_negative_prompt_goes_to_a_model_documented_to_take_it(fake: FakeVertex) -> None:
    fake.models.add("imagen-3.0-generate-001")
    async with routed((route("vertex", "imagen-3.0-generate-001", fake.url), fake.api_key)) as provider:
        outputs = await provider.run(make_job("google-imagen4", params={"negative_prompt": "blurry"}))
    assert fake.requests[0]["parameters"]["negativePrompt"] == "blurry"
    assert "notes" not in outputs.info and fake.violations == []


async def test_no_seed_leaves_watermarking_alone(fake: FakeVertex) -> None:
    async with routed((route("vertex", MODEL, fake.url), fake.api_key)) as provider:
        await provider.run(make_job("google-imagen4"))
    assert "seed" not in fake.requests[0]["parameters"] and "addWatermark" not in fake.requests[0]["parameters"]


@pytest.mark.parametrize(("location", "host"), [
    ("us-central1", "us-central1-aiplatform.googleapis.com"),
    ("europe-west4", "europe-west4-aiplatform.googleapis.com"),
    ("global", "aiplatform.googleapis.com"),
    ("us", "aiplatform.us.rep.googleapis.com"),
])
async def test_an_oauth_route_posts_to_the_host_that_serves_its_location(
    fake: FakeVertex, location: str, host: str
) -> None:
    config = Route.model_validate({"provider": "vertex", "name": "vertex-oauth", "upstream_model": MODEL,
                                   "credentials_env": "TOKEN", "retry": {"max_attempts": 1},
                                   "options": {"auth": "bearer", "project": fake.project, "location": location}})
    http = GoogleOnLoopback(fake.url)
    made = live_route(config, http, {"TOKEN": fake.token})
    assert isinstance(made, LiveRoute)
    try:
        outputs = await RoutedProvider("vertex", [made], sleep=Sleeps()).run(make_job("google-imagen4"))
    finally:
        await http.aclose()
    assert len(outputs.images) == 1 and fake.violations == []
    [sent] = fake.requests
    assert sent["host"] == host
    assert sent["path"] == f"/v1/projects/{fake.project}/locations/{location}/publishers/google/models/{MODEL}:predict"


async def test_the_fake_refuses_a_location_its_host_does_not_serve(fake: FakeVertex) -> None:
    """What the old default did: locations/us-central1 on the global host."""
    config = route("vertex", MODEL, "https://aiplatform.googleapis.com", retry={"max_attempts": 1},
                   options={"auth": "bearer", "project": fake.project, "location": "us-central1"})
    http = GoogleOnLoopback(fake.url)
    made = live_route(config, http, {"FAKE_KEY": fake.token})
    assert isinstance(made, LiveRoute)
    try:
        result = await outcome(RoutedProvider("vertex", [made], sleep=Sleeps()), make_job("google-imagen4"))
    finally:
        await http.aclose()
    assert not isinstance(result, Outputs) and "doesn't match the endpoint" in result.message


async def test_bearer_auth_uses_the_project_path(fake: FakeVertex) -> None:
    config = route("vertex", MODEL, fake.url, options={"auth": "bearer", "project_env": "PROJ", "location": "eu"})
    config = config.model_copy(update={"options": {"auth": "bearer", "project": "proj", "location": "eu"}})
    async with routed((config, fake.token)) as provider:
        outputs = await provider.run(make_job("google-imagen4", params={"seed": "7"}))
    assert len(outputs.images) == 1 and fake.violations == []


async def test_the_gemini_api_gets_no_vertex_only_parameters(fake: FakeVertex) -> None:
    config = route("vertex", MODEL, fake.url, options={"auth": "gemini"})
    async with routed((config, fake.api_key)) as provider:
        outputs = await provider.run(make_job("google-imagen4", params={"seed": "7", "negative_prompt": "x"}))
    assert fake.requests[0]["api"] == "gemini" and fake.violations == []
    assert {"seed", "negativePrompt", "addWatermark"}.isdisjoint(fake.requests[0]["parameters"])
    assert [note.split(" ")[0] for note in outputs.info["notes"]] == ["negative_prompt", "seed"]


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
