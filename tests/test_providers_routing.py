"""Routing end to end: a routes file points each model at its fake, tasks run through the HTTP API,
``/api/v1/models`` tells which route is live, and the shipped routing needs one key per provider."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from PIL import Image

from sfumato.clock import FrozenClock
from sfumato.db.models import Task
from sfumato.providers.factory import build_registry
from sfumato.providers.router import RoutedProvider
from sfumato.providers.routes import DEFAULT_FILE, RoutesFileError, load_routes
from sfumato.settings import Settings
from sfumato.worker import lease
from sfumato.worker.recovery import recover_expired_leases
from sfumato.worker.runner import TaskRun
from tests.conftest import Customer, new_customer, serve
from tests.helpers import create, wait_for_task
from tests.money import audit
from tests.upstreams.dashscope import FakeDashScope
from tests.upstreams.fal import FakeFal
from tests.upstreams.openai import FakeOpenAI
from tests.upstreams.relay import FakeRelay
from tests.upstreams.server import FAULTS
from tests.upstreams.vertex import FakeVertex
from tests.upstreams.xai import FakeXai

FAST = {"timeout_seconds": 1.0, "poll_seconds": 0.01, "retry": {"max_attempts": 2, "base_seconds": 0.01}}


class Fakes:
    def __init__(self) -> None:
        self.openai, self.xai, self.fal, self.vertex = FakeOpenAI(), FakeXai(), FakeFal(), FakeVertex()

    def routes(self) -> dict[str, Any]:
        return {"models": {
            "gpt-image-1-5": [{"provider": "openai", "upstream_model": "gpt-image-1.5",
                               "base_url": f"{self.openai.url}/v1",
                               "credentials_env": "SFUMATO_TEST_OPENAI_KEY", **FAST}],
            "grok-imagine": [{"provider": "xai", "upstream_model": "grok-imagine-image", "base_url": self.xai.url,
                              "credentials_env": "SFUMATO_TEST_XAI_KEY", "options": {"response_format": "url"},
                              "allowed_download_hosts": [self.xai.host], **FAST}],
            "qwen-image": [{"provider": "fal", "upstream_model": "fal-ai/qwen-image", "base_url": self.fal.url,
                            "edit_model": "fal-ai/qwen-image-edit", "credentials_env": "SFUMATO_TEST_FAL_KEY",
                            "allowed_download_hosts": [self.fal.host], **FAST}],
            "google-imagen4": [{"provider": "vertex", "upstream_model": "imagen-4.0-generate-001",
                                "base_url": self.vertex.url, "credentials_env": "SFUMATO_TEST_VERTEX_KEY", **FAST}],
        }}


@pytest.fixture
async def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Fakes, Path]]:
    fakes = Fakes()
    async with AsyncExitStack() as stack:
        for fake in (fakes.openai, fakes.xai, fakes.fal, fakes.vertex):
            await stack.enter_async_context(fake)
        path = tmp_path / "routes.yaml"
        path.write_text(yaml.safe_dump(fakes.routes()))
        for name, key in (("OPENAI", fakes.openai.key), ("XAI", fakes.xai.key), ("FAL", fakes.fal.key),
                          ("VERTEX", fakes.vertex.api_key)):
            monkeypatch.setenv(f"SFUMATO_TEST_{name}_KEY", key)
        yield fakes, path


async def balance(client: httpx.AsyncClient, who: Customer) -> int:
    return int((await client.get("/api/v1/account", headers=who.headers)).json()["balance"])


async def stored_size(client: httpx.AsyncClient, task: dict[str, Any]) -> tuple[int, int]:
    [media] = task["result"]["media"]
    data = (await client.get(media["url"])).content
    with Image.open(io.BytesIO(data)) as image:
        assert (media["width"], media["height"]) == image.size
        return image.size


CASES = [
    ("gpt-image-1-5", {"aspect_ratio": "3:2", "quality": "high"}, (1536, 1024), "openai"),
    ("grok-imagine", {"aspect_ratio": "9:16", "enable_pro": "true"}, (768, 1360), "xai"),
    ("qwen-image", {"image_size": "portrait_16_9", "output_format": "jpeg"}, (576, 1024), "fal"),
    ("google-imagen4", {"aspect_ratio": "16:9", "seed": "42", "negative_prompt": "fog"}, (1408, 768), "vertex"),
]


async def test_every_model_runs_on_its_fake_through_the_api(
    make_deps: Callable[..., Any], fakes: tuple[Fakes, Path]
) -> None:
    upstreams, path = fakes
    deps = await make_deps(routes_file=path)
    async with serve(deps) as client:
        who = await new_customer(deps, credits=100)
        for model, params, size, provider in CASES:
            created = (await create(client, who, model=model, params=params)).json()
            task = await wait_for_task(client, who, created["id"])
            assert task["status"] == "succeeded", task
            assert (task["result"]["provider"], task["result"]["sandbox"]) == (provider, False)
            assert await stored_size(client, task) == size
            for fake in (upstreams.openai, upstreams.xai, upstreams.fal, upstreams.vertex):
                assert fake.host not in str(task)  # upstream URLs never reach the client
        assert await balance(client, who) == 100 - 4 - 4 - 4 - 8
    assert all(not f.violations for f in (upstreams.openai, upstreams.xai, upstreams.fal, upstreams.vertex))


async def test_models_say_which_route_is_live(make_deps: Callable[..., Any], fakes: tuple[Fakes, Path],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SFUMATO_TEST_XAI_KEY")
    deps = await make_deps(routes_file=fakes[1])
    async with serve(deps) as client:
        listed = {m["id"]: m["route"] for m in (await client.get("/api/v1/models")).json()["data"]}
        single = (await client.get("/api/v1/models/gpt-image-1-5")).json()["route"]
    assert single == listed["gpt-image-1-5"] == {"provider": "openai", "upstream_model": "gpt-image-1.5",
                                                 "live": True, "health": "closed"}
    assert listed["grok-imagine"] == {"provider": "sandbox", "upstream_model": None, "live": False, "health": None}


async def test_upstream_failures_end_failed_with_their_code_and_credits_back(
    make_deps: Callable[..., Any], fakes: tuple[Fakes, Path]
) -> None:
    upstreams, path = fakes
    deps = await make_deps(routes_file=path)
    async with serve(deps) as client:
        who = await new_customer(deps, credits=100)
        upstreams.openai.inject("500", times=10)
        upstreams.fal.never_finish = True
        expectations = [("gpt-image-1-5", "a cat", "upstream_error"),
                        ("qwen-image", "a cat", "upstream_timeout"),
                        ("google-imagen4", "forbidden cat", "content_policy_violation")]
        for model, prompt, code in expectations:
            created = (await create(client, who, model=model, prompt=prompt)).json()
            task = await wait_for_task(client, who, created["id"])
            assert (task["status"], task["error"]["code"], task["final_credits"]) == ("failed", code, 0), task
        assert await balance(client, who) == 100
    assert len([s for s in upstreams.openai.served if "generations" in s]) == 2  # max_attempts
    assert all(q.canceled for q in upstreams.fal.queue.values())


async def test_a_reference_goes_to_the_edit_path(make_deps: Callable[..., Any], fakes: tuple[Fakes, Path]) -> None:
    upstreams, path = fakes
    deps = await make_deps(routes_file=path)
    async with serve(deps) as client:
        who = await new_customer(deps)
        buffer = io.BytesIO()
        Image.new("RGB", (64, 48), "red").save(buffer, "PNG")
        file = (await client.post("/api/v1/files", files={"file": ("r.png", buffer.getvalue(), "image/png")},
                                  headers=who.headers)).json()
        ref = {"url": file["url"], "kind": "image", "name": file["name"], "mimeType": file["mimeType"]}
        created = (await create(client, who, model="gpt-image-1-5",
                                params={"aspect_ratio": "2:3", "referenceMediaItems": [ref]})).json()
        task = await wait_for_task(client, who, created["id"])
        assert task["status"] == "succeeded", task
        assert await stored_size(client, task) == (1024, 1536)
    assert upstreams.openai.requests[0]["path"] == "edits" and upstreams.openai.violations == []


def test_the_shipped_routing_needs_one_key_per_provider() -> None:
    settings = Settings(sandbox_latency_ms="0")
    none = build_registry(settings, env={})
    assert all(none.for_model(m).name == "sandbox" for m in ("gpt-image-1-5", "grok-imagine", "qwen-image",
                                                             "google-imagen4"))
    for key, model, provider in (("OPENAI_API_KEY", "gpt-image-1-5", "openai"), ("XAI_API_KEY", "grok-imagine", "xai"),
                                 ("FAL_KEY", "qwen-image", "fal"), ("DASHSCOPE_API_KEY", "qwen-image", "dashscope"),
                                 ("GOOGLE_VERTEX_API_KEY", "google-imagen4", "vertex")):
        registry = build_registry(settings, env={key: "secret"})
        routed = registry.for_model(model)
        assert isinstance(routed, RoutedProvider) and routed.name == provider, key
        assert registry.route_view(model)["live"] is True
    both = build_registry(settings, env={"FAL_KEY": "f", "DASHSCOPE_API_KEY": "d"}).for_model("qwen-image")
    assert both.name == "fal+dashscope"
    relay = build_registry(settings, env={"SFUMATO_RELAY_API_KEY": "r"})
    assert relay.for_model("gpt-image-1-5").name == "sandbox"  # a relay needs its base URL too
    assert [s.missing for s in relay.statuses("gpt-image-1-5")] == ["OPENAI_API_KEY", "SFUMATO_RELAY_BASE_URL"]


def test_sandbox_only_ignores_every_key() -> None:
    registry = build_registry(Settings(sandbox_only=True), env={"OPENAI_API_KEY": "x"})
    assert registry.for_model("gpt-image-1-5").name == "sandbox"


def test_a_broken_routes_file_is_refused_at_startup(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text("models:\n  qwen-image:\n    - provider: nope\n      upstream_model: x\n      credentials_env: K\n")
    with pytest.raises(RoutesFileError):
        load_routes(path)
    assert load_routes(None) == load_routes(DEFAULT_FILE)


async def test_a_worker_taking_over_after_a_crash_polls_the_upstream_request_it_finds(
    make_deps: Callable[..., Any], fakes: tuple[Fakes, Path]
) -> None:
    """The first worker submitted to fal, kept the request handle with the task, then died (its
    process gone, so fal's request was never canceled). The next worker polls that request:
    one upstream submit in all, one charge."""
    upstreams, path = fakes
    clock = FrozenClock()
    deps = await make_deps(routes_file=path, run_worker=False, clock=clock, lease_seconds=30)
    who = await new_customer(deps, credits=20)
    async with serve(deps) as client:
        created = (await create(client, who, model="qwen-image")).json()
        async with deps.db.write() as session:
            [claim] = await lease.claim(session, 1, clock.now(), deps.lease)
        upstreams.fal.never_finish = True
        first = asyncio.create_task(TaskRun(deps, claim).execute())
        for _ in range(500):
            async with deps.db.read() as session:
                state = (await session.get(Task, claim.task_id, populate_existing=True)).upstream_state
            if state:
                break
            await asyncio.sleep(0.01)
        assert state is not None and state["route"] == "fal:fal-ai/qwen-image" and state["status_url"]
        first.cancel()  # the process dies: nothing more of it runs
        with contextlib.suppress(asyncio.CancelledError):
            await first
        for queued in upstreams.fal.queue.values():
            queued.canceled = False  # a dead process cancels nothing upstream
        upstreams.fal.never_finish = False
        clock.advance(seconds=31)
        assert await recover_expired_leases(deps) == (1, 0)
        async with deps.db.write() as session:
            [second] = await lease.claim(session, 1, clock.now(), deps.lease)
        assert second.upstream_state == state
        await TaskRun(deps, second).execute()
        task = (await client.get(f"/api/v1/tasks/{created['id']}", headers=who.headers)).json()
    assert (task["status"], task["final_credits"]) == ("succeeded", 4), task
    assert "upstream_state" not in task and upstreams.fal.host not in str(task)
    assert len([s for s in upstreams.fal.served if s.startswith("POST")]) == 1
    assert (await audit(deps, who.account_id)).balance == 16


async def test_the_fault_matrix_through_the_api_loses_no_credit_and_leaves_no_task_running(
    make_deps: Callable[..., Any], fakes: tuple[Fakes, Path]
) -> None:
    """Each fault, once, on each model's upstream: the task ends (retried to success, or failed
    with its code and refunded), nothing stays queued or running, and the books balance."""
    upstreams, path = fakes
    deps = await make_deps(routes_file=path)
    by_model = {"gpt-image-1-5": upstreams.openai, "grok-imagine": upstreams.xai, "qwen-image": upstreams.fal,
                "google-imagen4": upstreams.vertex}
    async with serve(deps) as client:
        who = await new_customer(deps, credits=1000)
        ended: dict[tuple[str, str], tuple[str, str | None]] = {}
        for model, fake in by_model.items():
            for fault in FAULTS:
                fake.inject(fault)
                created = (await create(client, who, model=model)).json()
                task = await wait_for_task(client, who, created["id"], timeout=30)
                ended[(model, fault)] = (task["status"], (task.get("error") or {}).get("code"))
    for (model, fault), outcome in ended.items():
        expected = ("failed", "upstream_bad_response") if fault == "malformed" else ("succeeded", None)
        assert outcome == expected, (model, fault, outcome)
    books = await audit(deps, who.account_id)
    assert books.held == 0 and set(books.statuses) <= {"succeeded", "failed"}
    assert books.spent == sum(4 if m != "google-imagen4" else 8 for (m, _), (s, _) in ended.items() if s == "succeeded")


async def test_the_alternative_routes_through_the_api_under_faults(
    make_deps: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DashScope for qwen-image and the relay for gpt-image-1-5 edits, each route alone in its
    model's list: every fault once, and the task still ends with the books balanced."""
    async with FakeDashScope() as dashscope, FakeRelay(asynchronous=True) as relay:
        path = tmp_path / "alternative.yaml"
        path.write_text(yaml.safe_dump({"models": {
            "qwen-image": [{"provider": "dashscope", "upstream_model": "qwen-image",
                            "base_url": f"{dashscope.url}/api/v1", "credentials_env": "SFUMATO_TEST_DS_KEY",
                            "allowed_download_hosts": [dashscope.host], **FAST}],
            "gpt-image-1-5": [{"provider": "relay", "upstream_model": "gpt-image-1.5", "base_url": relay.url,
                               "credentials_env": "SFUMATO_TEST_RELAY_KEY", **FAST}],
        }}))
        monkeypatch.setenv("SFUMATO_TEST_DS_KEY", dashscope.key)
        monkeypatch.setenv("SFUMATO_TEST_RELAY_KEY", relay.key)
        deps = await make_deps(routes_file=path)
        async with serve(deps) as client:
            who = await new_customer(deps, credits=1000)
            buffer = io.BytesIO()
            Image.new("RGB", (64, 48), "red").save(buffer, "PNG")
            file = (await client.post("/api/v1/files", files={"file": ("r.png", buffer.getvalue(), "image/png")},
                                      headers=who.headers)).json()
            ref = {"url": file["url"], "kind": "image", "name": file["name"], "mimeType": file["mimeType"]}
            ended: dict[tuple[str, str], tuple[str, str | None]] = {}
            for model, fake, params in (("qwen-image", dashscope, {}),
                                        ("gpt-image-1-5", relay, {"referenceMediaItems": [ref]})):
                for fault in FAULTS:
                    fake.inject(fault)
                    created = (await create(client, who, model=model, params=params)).json()
                    task = await wait_for_task(client, who, created["id"], timeout=30)
                    ended[(model, fault)] = (task["status"], (task.get("error") or {}).get("code"))
        assert not dashscope.violations and not relay.violations
    for (model, fault), outcome in ended.items():
        expected = ("failed", "upstream_bad_response") if fault == "malformed" else ("succeeded", None)
        assert outcome == expected, (model, fault, outcome)
    books = await audit(deps, who.account_id)
    assert books.held == 0 and books.spent == 4 * sum(1 for s, _ in ended.values() if s == "succeeded")
