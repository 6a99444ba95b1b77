"""fal queue adapter against its loopback fake: submit → poll → result → CDN, resume, cancel, faults."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sfumato.providers.base import Outputs
from tests.upstreams.fal import FakeFal
from tests.upstreams.harness import CATALOG, Sleeps, make_job, reference, route, routed, size_of
from tests.upstreams.matrix import FAULT_MATRIX, Expect, check, outcome

KEY = "fal-test"


@pytest.fixture
async def fake() -> AsyncIterator[FakeFal]:
    async with FakeFal(KEY) as server:
        yield server


def fal_route(fake: FakeFal, model: str = "fal-ai/qwen-image", **extra: Any):  # type: ignore[no-untyped-def]
    values: dict[str, Any] = {"edit_model": "fal-ai/qwen-image-edit", "allowed_download_hosts": [fake.host]}
    values.update(extra)
    return route("fal", model, fake.url, **values)


def submits(fake: FakeFal) -> list[str]:
    return [s for s in fake.served if s.startswith("POST ")]


async def until(condition: Any) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


@pytest.mark.parametrize("image_size", ["square", "square_hd", "portrait_4_3", "portrait_16_9",
                                        "landscape_4_3", "landscape_16_9"])
async def test_qwen_text_to_image_polls_then_downloads_the_preset_size(fake: FakeFal, image_size: str) -> None:
    saved: list[dict[str, Any]] = []

    async def checkpoint(state: dict[str, Any]) -> None:
        saved.append(state)

    job = dataclasses.replace(make_job("qwen-image", params={"image_size": image_size, "output_format": "jpeg"}),
                              checkpoint=checkpoint)
    async with routed((fal_route(fake), KEY)) as provider:
        outputs = await provider.run(job)
    [image] = outputs.images
    expected = CATALOG.get("qwen-image").output.sizes[image_size]  # type: ignore[union-attr]
    assert (image.width, image.height) == size_of(image.data) == expected and image.mime_type == "image/jpeg"
    [queued] = fake.queue.values()
    assert (queued.model, queued.body) == ("fal-ai/qwen-image", {
        "prompt": "a red fox in fresh snow", "image_size": image_size, "output_format": "jpeg", "num_images": 1})
    assert queued.polls == 2  # IN_QUEUE (202), then COMPLETED (200)
    [state] = saved
    assert state["route"] == "fal:fal-ai/qwen-image" and state["status_url"].endswith("/status")
    assert fake.violations == []


async def test_qwen_edit_goes_to_the_edit_app_with_one_data_url(fake: FakeFal) -> None:
    async with routed((fal_route(fake), KEY)) as provider:
        outputs = await provider.run(make_job("qwen-image", params={"image_size": "portrait_16_9"},
                                              refs=(reference(),)))
    [queued] = fake.queue.values()
    assert queued.model == "fal-ai/qwen-image-edit"
    assert queued.body["image_url"].startswith("data:image/png;base64,")
    assert (outputs.images[0].width, outputs.images[0].height) == (576, 1024)
    assert fake.violations == []


async def test_qwen_edit_without_a_chosen_size_lets_the_output_follow_the_input(fake: FakeFal) -> None:
    async with routed((fal_route(fake), KEY)) as provider:  # image_size: the catalog's default square_hd
        outputs = await provider.run(make_job("qwen-image", refs=(reference(width=320, height=180),)))
    [queued] = fake.queue.values()
    assert queued.model == "fal-ai/qwen-image-edit" and "image_size" not in queued.body
    assert (outputs.images[0].width, outputs.images[0].height) == (320, 180)
    assert fake.violations == []


@pytest.mark.parametrize("aspect_ratio", ["1:1", "16:9", "9:16", "3:4", "4:3"])
async def test_imagen4_on_fal_maps_ratio_and_seed_and_drops_negative_prompt(fake: FakeFal, aspect_ratio: str) -> None:
    params = {"aspect_ratio": aspect_ratio, "seed": "42", "negative_prompt": "blur"}
    async with routed((fal_route(fake, "fal-ai/imagen4/preview"), KEY)) as provider:
        outputs = await provider.run(make_job("google-imagen4", params=params))
    [queued] = fake.queue.values()
    assert queued.body == {"prompt": "a red fox in fresh snow", "num_images": 1, "output_format": "png",
                           "aspect_ratio": aspect_ratio, "seed": 42}
    expected = CATALOG.get("google-imagen4").output.sizes[aspect_ratio]  # type: ignore[union-attr]
    assert (outputs.images[0].width, outputs.images[0].height) == expected
    assert outputs.info["notes"] == ["negative_prompt was not sent: fal's imagen4 app takes no negative_prompt."]
    assert fake.violations == []


async def test_resume_polls_the_earlier_request_instead_of_submitting(fake: FakeFal) -> None:
    async with routed((fal_route(fake), KEY)) as provider:
        saved: list[dict[str, Any]] = []

        async def checkpoint(state: dict[str, Any]) -> None:
            saved.append(state)

        fake.never_finish = True
        first = asyncio.create_task(provider.run(dataclasses.replace(make_job("qwen-image"), checkpoint=checkpoint)))
        await until(lambda: saved)
        first.cancel()  # as a worker crash would leave it, minus the upstream cancel: undo that below
        with pytest.raises(asyncio.CancelledError):
            await first
        for queued in fake.queue.values():
            queued.canceled = False
        fake.never_finish = False
        outputs = await provider.run(make_job("qwen-image", resume=saved[0]))
    assert len(submits(fake)) == 1 and len(outputs.images) == 1


async def test_resume_of_a_request_fal_no_longer_knows_submits_anew(fake: FakeFal) -> None:
    stale = {"route": "fal:fal-ai/qwen-image", "model": "fal-ai/qwen-image", "request_id": "gone",
             **{k: f"{fake.url}/fal-ai/qwen-image/requests/gone{s}"
                for k, s in (("status_url", "/status"), ("response_url", ""), ("cancel_url", "/cancel"))}}
    async with routed((fal_route(fake), KEY)) as provider:
        outputs = await provider.run(make_job("qwen-image", resume=stale))
    assert len(submits(fake)) == 1 and len(outputs.images) == 1


async def test_canceling_the_run_cancels_the_upstream_request(fake: FakeFal) -> None:
    fake.never_finish = True
    async with routed((fal_route(fake), KEY)) as provider:
        run = asyncio.create_task(provider.run(make_job("qwen-image")))
        await until(lambda: any(q.polls for q in fake.queue.values()))
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
    [queued] = fake.queue.values()
    assert queued.canceled


async def test_a_request_that_never_finishes_times_out_each_attempt_and_is_canceled(fake: FakeFal) -> None:
    fake.never_finish = True
    sleeps = Sleeps()
    config = fal_route(fake, timeout_seconds=0.3, retry={"max_attempts": 2, "base_seconds": 0.01})
    async with routed((config, KEY), sleep=sleeps) as provider:
        result = await outcome(provider, make_job("qwen-image"))
    assert not isinstance(result, Outputs) and result.code == "upstream_timeout"
    assert len(submits(fake)) == 2 and all(q.canceled for q in fake.queue.values())


async def test_a_status_fault_is_retried_by_polling_the_same_request(fake: FakeFal) -> None:
    fake.inject("500", path="/status")
    sleeps = Sleeps()
    async with routed((fal_route(fake), KEY), sleep=sleeps) as provider:
        result = await outcome(provider, make_job("qwen-image"))
    assert isinstance(result, Outputs) and len(sleeps.delays) == 1
    assert len(submits(fake)) == 1  # the retry resumed; it did not pay for a second generation


async def test_the_safety_checker_is_a_content_policy_violation(fake: FakeFal) -> None:
    async with routed((fal_route(fake), KEY)) as provider:
        result = await outcome(provider, make_job("qwen-image", prompt="nsfw thing"))
    assert not isinstance(result, Outputs) and result.code == "content_policy_violation"


async def test_poll_urls_off_the_queue_host_get_no_key(fake: FakeFal) -> None:
    stale = {"route": "fal:fal-ai/qwen-image", "status_url": "https://evil.example/status",
             "response_url": "https://evil.example/r", "cancel_url": "https://evil.example/c"}
    async with routed((fal_route(fake), KEY)) as provider:
        result = await outcome(provider, make_job("qwen-image", resume=stale))
    assert not isinstance(result, Outputs) and result.code == "upstream_bad_response"
    assert fake.served == []


@pytest.mark.parametrize("expect", FAULT_MATRIX, ids=lambda e: e.fault)
async def test_fault_matrix_on_submit(fake: FakeFal, expect: Expect) -> None:
    fake.inject(expect.fault, path="/fal-ai/qwen-image")
    sleeps = Sleeps()
    async with routed((fal_route(fake, timeout_seconds=0.5), KEY), sleep=sleeps) as provider:
        result = await outcome(provider, make_job("qwen-image"))
    check(expect, result, sleeps)
