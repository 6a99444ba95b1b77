"""DashScope adapter against its loopback fake: async header, sizes, polling, resume, cancel, faults."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sfumato.providers.base import Outputs
from sfumato.providers.dashscope import SIZE
from tests.upstreams.dashscope import FakeDashScope
from tests.upstreams.harness import Sleeps, make_job, route, routed, size_of
from tests.upstreams.matrix import FAULT_MATRIX, Expect, check, outcome

KEY = "sk-dashscope"


@pytest.fixture
async def fake() -> AsyncIterator[FakeDashScope]:
    async with FakeDashScope(KEY) as server:
        yield server


def ds_route(fake: FakeDashScope, **extra: Any):  # type: ignore[no-untyped-def]
    return route("dashscope", "qwen-image", f"{fake.url}/api/v1", allowed_download_hosts=[fake.host], **extra)


@pytest.mark.parametrize("image_size", list(SIZE))
async def test_each_preset_gets_dashscopes_own_size(fake: FakeDashScope, image_size: str) -> None:
    async with routed((ds_route(fake), KEY)) as provider:
        outputs = await provider.run(make_job("qwen-image", params={"image_size": image_size}))
    [image] = outputs.images
    expected = tuple(int(s) for s in SIZE[image_size].split("*"))
    assert (image.width, image.height) == size_of(image.data) == expected
    [task] = fake.tasks.values()
    assert task.body == {"model": "qwen-image", "input": {"prompt": "a red fox in fresh snow"},
                         "parameters": {"size": SIZE[image_size], "n": 1, "prompt_extend": True, "watermark": False}}
    assert task.polls == 2 and fake.violations == []


async def test_jpeg_is_re_encoded_at_the_same_size(fake: FakeDashScope) -> None:
    async with routed((ds_route(fake), KEY)) as provider:
        outputs = await provider.run(make_job("qwen-image", params={"output_format": "jpeg"}))
    assert outputs.images[0].mime_type == "image/jpeg" and size_of(outputs.images[0].data) == (1328, 1328)


async def test_a_failed_inspection_is_a_content_policy_violation(fake: FakeDashScope) -> None:
    async with routed((ds_route(fake), KEY)) as provider:
        result = await outcome(provider, make_job("qwen-image", prompt="forbidden"))
    assert not isinstance(result, Outputs) and result.code == "content_policy_violation"


async def test_resume_polls_the_checkpointed_task_and_an_unknown_one_is_resubmitted(fake: FakeDashScope) -> None:
    async with routed((ds_route(fake), KEY)) as provider:
        await provider.run(make_job("qwen-image"))
        [task_id] = fake.tasks
        again = await provider.run(make_job("qwen-image", resume={"route": "dashscope:qwen-image", "task_id": task_id}))
        assert len(fake.tasks) == 1 and len(again.images) == 1
        await provider.run(make_job("qwen-image", resume={"route": "dashscope:qwen-image", "task_id": "nope"}))
        assert len(fake.tasks) == 2


async def test_canceling_cancels_the_upstream_task(fake: FakeDashScope) -> None:
    fake.never_finish = True
    async with routed((ds_route(fake), KEY)) as provider:
        run = asyncio.create_task(provider.run(make_job("qwen-image")))
        for _ in range(500):
            if any(t.polls for t in fake.tasks.values()):
                break
            await asyncio.sleep(0.01)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
    assert all(t.canceled for t in fake.tasks.values())


async def test_a_task_that_never_finishes_ends_as_upstream_timeout(fake: FakeDashScope) -> None:
    fake.never_finish = True
    config = ds_route(fake, timeout_seconds=0.3, retry={"max_attempts": 2, "base_seconds": 0.01})
    async with routed((config, KEY)) as provider:
        result = await outcome(provider, make_job("qwen-image"))
    assert not isinstance(result, Outputs) and result.code == "upstream_timeout"
    assert len(fake.tasks) == 2 and all(t.canceled for t in fake.tasks.values())


async def test_edits_are_not_served_by_dashscope(fake: FakeDashScope) -> None:
    from tests.upstreams.harness import reference

    async with routed((ds_route(fake), KEY)) as provider:
        result = await outcome(provider, make_job("qwen-image", refs=(reference(),)))
    assert not isinstance(result, Outputs) and result.code == "no_route" and fake.served == []


@pytest.mark.parametrize("expect", FAULT_MATRIX, ids=lambda e: e.fault)
async def test_fault_matrix(fake: FakeDashScope, expect: Expect) -> None:
    fake.inject(expect.fault, path="/image-synthesis")
    sleeps = Sleeps()
    async with routed((ds_route(fake, timeout_seconds=0.5), KEY), sleep=sleeps) as provider:
        result = await outcome(provider, make_job("qwen-image"))
    check(expect, result, sleeps)
