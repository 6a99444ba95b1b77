"""xAI adapter against its loopback fake: enable_pro, the edit path, b64 and url answers, faults."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sfumato.providers.base import Outputs
from tests.upstreams.harness import CATALOG, Sleeps, make_job, reference, route, routed, size_of
from tests.upstreams.matrix import FAULT_MATRIX, Expect, check, outcome
from tests.upstreams.xai import FakeXai

KEY = "xai-test"


@pytest.fixture
async def fake() -> AsyncIterator[FakeXai]:
    async with FakeXai(KEY) as server:
        yield server


def xai_route(fake: FakeXai, **options: object):  # type: ignore[no-untyped-def]
    return route("xai", "grok-imagine-image", fake.url, allowed_download_hosts=[fake.host],
                 options={"pro_model": "grok-imagine-image-quality", **options})


@pytest.mark.parametrize("aspect_ratio", ["1:1", "2:3", "3:2", "16:9", "9:16"])
@pytest.mark.parametrize("response_format", ["b64_json", "url"])
async def test_generation_decodes_b64_or_downloads_the_url(
    fake: FakeXai, aspect_ratio: str, response_format: str
) -> None:
    async with routed((xai_route(fake, response_format=response_format), KEY)) as provider:
        outputs = await provider.run(make_job("grok-imagine", params={"aspect_ratio": aspect_ratio}))
    [image] = outputs.images
    expected = CATALOG.get("grok-imagine").output.sizes[aspect_ratio]  # type: ignore[union-attr]
    assert (image.width, image.height) == size_of(image.data) == expected
    assert image.mime_type == "image/jpeg"
    [sent] = fake.requests
    assert sent == {"model": "grok-imagine-image", "prompt": "a red fox in fresh snow", "n": 1,
                    "aspect_ratio": aspect_ratio, "response_format": response_format}
    assert "url" not in str(outputs.info) and fake.violations == []


async def test_b64_with_the_older_data_prefix_is_decoded_too() -> None:
    async with FakeXai(KEY, data_prefix=True) as fake, routed((xai_route(fake), KEY)) as provider:
        outputs = await provider.run(make_job("grok-imagine"))
    assert (outputs.images[0].width, outputs.images[0].height) == (1024, 1024) and fake.violations == []


async def test_enable_pro_switches_text_to_image_to_the_quality_model(fake: FakeXai) -> None:
    async with routed((xai_route(fake), KEY)) as provider:
        outputs = await provider.run(make_job("grok-imagine", params={"enable_pro": "true"}))
    assert fake.requests[0]["model"] == "grok-imagine-image-quality"
    assert outputs.info["upstream_model"] == "grok-imagine-image-quality"


async def test_pro_quality_option_sends_quality_for_newer_models(fake: FakeXai) -> None:
    config = route("xai", "grok-imagine-image-2.0", fake.url, options={"pro_quality": "high"})
    async with routed((config, KEY)) as provider:
        await provider.run(make_job("grok-imagine", params={"enable_pro": "true"}))
        await provider.run(make_job("grok-imagine", params={"enable_pro": "false"}))
    assert [r.get("quality") for r in fake.requests] == ["high", None]


async def test_the_edit_path_sends_one_data_url_and_ignores_enable_pro(fake: FakeXai) -> None:
    async with routed((xai_route(fake), KEY)) as provider:
        outputs = await provider.run(make_job("grok-imagine", params={"enable_pro": "true", "aspect_ratio": "3:2"},
                                              refs=(reference(fmt="webp"),)))
    [sent] = fake.requests
    assert sent["model"] == "grok-imagine-image"
    assert sent["image"]["type"] == "image_url" and sent["image"]["url"].startswith("data:image/webp;base64,")
    assert "images" not in sent and "size" not in sent
    assert (outputs.images[0].width, outputs.images[0].height) == (1248, 832)
    assert fake.violations == []


async def test_an_edit_without_a_chosen_ratio_lets_the_output_follow_the_input(fake: FakeXai) -> None:
    async with routed((xai_route(fake), KEY)) as provider:  # aspect_ratio: the catalog's default 1:1
        outputs = await provider.run(make_job("grok-imagine", refs=(reference(width=320, height=180),)))
    [sent] = fake.requests
    assert "aspect_ratio" not in sent and fake.violations == []
    [image] = outputs.images
    assert abs(image.width / image.height - 16 / 9) < 0.02  # the input's 16:9, not a square


async def test_a_withheld_image_is_a_content_policy_violation(fake: FakeXai) -> None:
    async with routed((xai_route(fake), KEY)) as provider:
        result = await outcome(provider, make_job("grok-imagine", prompt="forbidden thing"))
    assert not isinstance(result, Outputs) and result.code == "content_policy_violation"


async def test_a_wrong_key_is_an_auth_failure(fake: FakeXai) -> None:
    async with routed((xai_route(fake), "wrong")) as provider:
        result = await outcome(provider, make_job("grok-imagine"))
    assert not isinstance(result, Outputs) and result.code == "upstream_auth_failed"
    assert "Incorrect API key" in result.message


async def test_output_urls_off_the_allowed_hosts_are_not_fetched(fake: FakeXai) -> None:
    config = route("xai", "grok-imagine-image", fake.url, options={"response_format": "url"})
    async with routed((config, KEY)) as provider:  # default hosts: xAI's own, not the fake's
        result = await outcome(provider, make_job("grok-imagine"))
    assert not isinstance(result, Outputs) and result.code == "upstream_bad_response"
    assert not any(path.startswith("GET /files/") for path in fake.served)


@pytest.mark.parametrize("expect", FAULT_MATRIX, ids=lambda e: e.fault)
async def test_fault_matrix(fake: FakeXai, expect: Expect) -> None:
    fake.inject(expect.fault, path="/v1/images/")
    sleeps = Sleeps()
    async with routed((route("xai", "grok-imagine-image", fake.url, timeout_seconds=0.5), KEY),
                      sleep=sleeps) as provider:
        result = await outcome(provider, make_job("grok-imagine"))
    check(expect, result, sleeps)


@pytest.mark.parametrize("fault", ["500", "truncated"])
async def test_faults_on_the_output_download_are_retried(fake: FakeXai, fault: str) -> None:
    fake.inject(fault, path="/files/")
    sleeps = Sleeps()
    async with routed((xai_route(fake, response_format="url"), KEY), sleep=sleeps) as provider:
        result = await outcome(provider, make_job("grok-imagine"))
    assert isinstance(result, Outputs) and len(sleeps.delays) == 1
