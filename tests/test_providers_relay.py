"""Relay (image-edit API, spec §8) adapter against its fake: sync and async relays, envelope errors, faults."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sfumato.providers.base import Outputs
from tests.upstreams.harness import Sleeps, make_job, reference, route, routed, size_of
from tests.upstreams.matrix import FAULT_MATRIX, Expect, check, outcome
from tests.upstreams.relay import FakeRelay

KEY = "sk-relay"


@pytest.fixture(params=[False, True], ids=["sync", "async"])
async def fake(request: pytest.FixtureRequest) -> AsyncIterator[FakeRelay]:
    async with FakeRelay(KEY, asynchronous=request.param) as server:
        yield server


def relay_route(fake: FakeRelay, **extra: object):  # type: ignore[no-untyped-def]
    return route("relay", "gpt-image-1.5", fake.url, **extra)


@pytest.mark.parametrize(("aspect_ratio", "size"), [("1:1", (1024, 1024)), ("3:2", (1536, 1024)),
                                                    ("2:3", (1024, 1536))])
async def test_an_edit_with_references_comes_back_at_the_requested_size(
    fake: FakeRelay, aspect_ratio: str, size: tuple[int, int]
) -> None:
    refs = tuple(reference(index=i) for i in range(3))
    async with routed((relay_route(fake), KEY)) as provider:
        outputs = await provider.run(make_job("gpt-image-1-5", params={"aspect_ratio": aspect_ratio}, refs=refs))
    assert size_of(outputs.images[0].data) == size == (outputs.images[0].width, outputs.images[0].height)
    [sent] = fake.requests
    assert len(sent["images"]) == 3 and all(i["image_url"].startswith("data:image/png") for i in sent["images"])
    assert (sent["model"], sent["n"], sent["quality"]) == ("gpt-image-1.5", 1, "medium")
    assert fake.violations == []


async def test_the_relay_serves_no_text_to_image(fake: FakeRelay) -> None:
    async with routed((relay_route(fake), KEY)) as provider:
        result = await outcome(provider, make_job("gpt-image-1-5"))
    assert not isinstance(result, Outputs) and result.code == "no_route"


async def test_an_envelope_error_is_classified(fake: FakeRelay) -> None:
    async with routed((relay_route(fake), "wrong")) as provider:
        result = await outcome(provider, make_job("gpt-image-1-5", refs=(reference(),)))
    assert not isinstance(result, Outputs) and result.code == "upstream_auth_failed"


@pytest.mark.parametrize("expect", FAULT_MATRIX, ids=lambda e: e.fault)
async def test_fault_matrix(fake: FakeRelay, expect: Expect) -> None:
    fake.inject(expect.fault, path="/api/v1/image/generation")
    sleeps = Sleeps()
    async with routed((relay_route(fake, timeout_seconds=0.5), KEY), sleep=sleeps) as provider:
        result = await outcome(provider, make_job("gpt-image-1-5", refs=(reference(),)))
    check(expect, result, sleeps)
