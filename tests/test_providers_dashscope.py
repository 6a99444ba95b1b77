"""DashScope adapter against its loopback fake: async header, sizes, polling, resume, cancel,
faults, and the region setting that picks the host."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from typer.testing import CliRunner

from sfumato.cli import app
from sfumato.providers.base import Outputs
from sfumato.providers.dashscope import SIZE
from sfumato.providers.factory import build_registry, build_routed, default_bases
from sfumato.providers.http import MAX_JSON_BYTES, Answer, UpstreamHttp
from sfumato.providers.routes import RoutesFile
from sfumato.providers.sandbox import SandboxProvider
from sfumato.settings import Settings
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


class AlibabaOnLoopback(UpstreamHttp):
    """Sends requests for Alibaba's hosts to the fake instead (DNS and TLS are the edge of the
    world here), keeping the host the adapter chose in ``Host``."""

    def __init__(self, fake_url: str):
        super().__init__()
        self.fake_url = fake_url

    async def request(self, method: str, url: str, *, time_limit: float, max_bytes: int = MAX_JSON_BYTES,
                      **kwargs: Any) -> Answer:
        parts = urlsplit(url)
        assert parts.scheme == "https" and parts.netloc.endswith(".aliyuncs.com"), url
        headers = {**kwargs.pop("headers", {}), "Host": parts.netloc}
        return await super().request(method, f"{self.fake_url}{parts.path}?{parts.query}", time_limit=time_limit,
                                     max_bytes=max_bytes, headers=headers, **kwargs)


@pytest.mark.parametrize(("region", "host"), [("singapore", "dashscope-intl.aliyuncs.com"),
                                              ("beijing", "dashscope.aliyuncs.com")])
async def test_the_region_setting_picks_the_host_the_task_is_sent_to(region: str, host: str) -> None:
    routes = RoutesFile.model_validate({"models": {"qwen-image": [
        {"provider": "dashscope", "upstream_model": "qwen-image", "credentials_env": "DASHSCOPE_API_KEY",
         "poll_seconds": 0.01}]}})
    async with FakeDashScope(KEY, files_url="https://dashscope-result-bj.oss-cn-beijing.aliyuncs.com") as fake:
        http = AlibabaOnLoopback(fake.url)
        registry = build_routed(routes, http, {"DASHSCOPE_API_KEY": KEY}, SandboxProvider((0, 0), 0.0),
                                default_bases(Settings(dashscope_region=region)))
        try:
            outputs = await registry.for_model("qwen-image").run(make_job("qwen-image"))
        finally:
            await http.aclose()
    assert fake.hosts == [host] and len(outputs.images) == 1 and fake.violations == []
    [status] = registry.statuses("qwen-image")
    assert (status.host, status.region, status.where) == (host, region, f"{host} ({region})")


def test_sfumato_providers_names_the_dashscope_region_and_host(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    for name in ("SFUMATO_ROUTES_FILE", "SFUMATO_SANDBOX_ONLY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SFUMATO_DATA_DIR", str(tmp_path_factory.mktemp("data")))
    monkeypatch.setenv("SFUMATO_DASHSCOPE_REGION", "beijing")
    result = CliRunner().invoke(app, ["providers", "--json"])
    assert result.exit_code == 0, result.output
    [row] = [r for r in json.loads(result.output) if r["provider"] == "dashscope"]
    assert (row["host"], row["region"]) == ("dashscope.aliyuncs.com", "beijing")
    table = CliRunner().invoke(app, ["providers"], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "dashscope.aliyuncs.com (beijing)" in table.output


def test_a_region_sfumato_does_not_know_stops_the_settings() -> None:
    with pytest.raises(ValueError, match="singapore"):
        Settings(dashscope_region="mars")


def test_the_default_region_is_singapore_and_a_routes_base_url_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SFUMATO_DASHSCOPE_REGION", raising=False)
    assert Settings().dashscope_region == "singapore"
    [status] = build_registry(Settings(dashscope_region="beijing"), env={"DASHSCOPE_API_KEY": "k"}).statuses(
        "qwen-image")[1:]
    assert status.host == "dashscope.aliyuncs.com"
    routes = RoutesFile.model_validate({"models": {"qwen-image": [
        {"provider": "dashscope", "upstream_model": "qwen-image", "credentials_env": "K",
         "base_url": "https://ws-1.eu-central-1.maas.aliyuncs.com/api/v1"}]}})
    [custom] = build_routed(routes, UpstreamHttp(), {"K": "k"}, SandboxProvider((0, 0), 0.0),
                            default_bases(Settings(dashscope_region="beijing"))).statuses()
    assert (custom.host, custom.region) == ("ws-1.eu-central-1.maas.aliyuncs.com", None)
