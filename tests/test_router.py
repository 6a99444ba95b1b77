"""The router and the circuit breaker, over scripted adapters: retries, backoff, failover, breaker."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY

from sfumato.providers.base import Job, OutputImage, Outputs, ProviderError
from sfumato.providers.breaker import CircuitBreaker, State
from sfumato.providers.errors import (
    ContentPolicyViolation,
    UpstreamAuthFailed,
    UpstreamError,
    UpstreamRateLimited,
)
from sfumato.providers.router import LiveRoute, RoutedProvider, backoff, ordered
from sfumato.providers.routes import RetryConfig, Route
from tests.upstreams.harness import Sleeps, make_job

Step = ProviderError | str  # an error to raise, or "ok" / "hang"


class Scripted:
    """An adapter that plays a script, one step per call, and records the jobs it was given."""

    supports_cancel = True

    def __init__(self, name: str, *steps: Step, edits_only: bool = False):
        self.name = name
        self.steps = list(steps)
        self.jobs: list[Job] = []
        self.edits_only = edits_only

    def supports(self, job: Job) -> bool:
        return bool(job.references) or not self.edits_only

    async def run(self, job: Job) -> Outputs:
        self.jobs.append(job)
        step = self.steps.pop(0) if self.steps else "ok"
        if isinstance(step, ProviderError):
            raise step
        if step == "hang":
            await asyncio.sleep(3600)
        if step == "checkpoint":
            await job.checkpoint({"request_id": "up-1"})
            raise UpstreamError("poll failed")
        return Outputs([OutputImage(b"x", "image/png", 1, 1)], provider=self.name)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def live(adapter: Scripted, clock: Callable[[], float] | None = None, **extra: Any) -> LiveRoute:
    values: dict[str, Any] = {"provider": "openai", "name": adapter.name, "upstream_model": adapter.name,
                              "credentials_env": "K", "timeout_seconds": 5,
                              "retry": {"max_attempts": 3, "base_seconds": 0.5, "max_seconds": 8}}
    values.update(extra)
    config = Route.model_validate(values)
    breaker = CircuitBreaker(config.breaker.failures, config.breaker.reset_seconds, clock or Clock())
    return LiveRoute(config, adapter, breaker)  # type: ignore[arg-type]


def provider(*routes: LiveRoute, sleeps: Sleeps | None = None) -> RoutedProvider:
    return RoutedProvider("gpt-image-1-5", list(routes), sleep=sleeps or Sleeps(), rng=random.Random(3))


async def run(p: RoutedProvider, job: Job | None = None) -> Outputs | ProviderError:
    try:
        return await p.run(job or make_job("gpt-image-1-5"))
    except ProviderError as exc:
        return exc


def test_backoff_is_full_jitter_under_an_exponential_ceiling_and_honours_retry_after() -> None:
    policy, rng = RetryConfig(base_seconds=0.5, max_seconds=4.0), random.Random(1)
    for attempt, ceiling in ((1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)):
        delays = [backoff(policy, attempt, None, rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8 and min(delays) < ceiling * 0.2  # spread over the whole range
    assert all(backoff(policy, 1, 3.0, rng) >= 3.0 for _ in range(50))


async def test_transient_errors_are_retried_with_backoff_then_succeed() -> None:
    adapter, sleeps = Scripted("a", UpstreamError("boom"), UpstreamRateLimited("slow", retry_after=2.5)), Sleeps()
    result = await run(provider(live(adapter), sleeps=sleeps))
    assert isinstance(result, Outputs) and len(adapter.jobs) == 3
    assert len(sleeps.delays) == 2 and 0 <= sleeps.delays[0] <= 0.5 and sleeps.delays[1] >= 2.5


async def test_a_refusal_is_not_retried_nor_failed_over() -> None:
    first, second = Scripted("a", ContentPolicyViolation("no")), Scripted("b")
    result = await run(provider(live(first), live(second)))
    assert isinstance(result, ProviderError) and result.code == "content_policy_violation"
    assert (len(first.jobs), len(second.jobs)) == (1, 0)


async def test_route_faults_fail_over_at_once_and_retries_exhaust_before_failover() -> None:
    first, second, third = Scripted("a", UpstreamAuthFailed("bad key")), Scripted("b", *[UpstreamError("x")] * 3), \
        Scripted("c")
    sleeps = Sleeps()
    result = await run(provider(live(first), live(second), live(third), sleeps=sleeps))
    assert isinstance(result, Outputs) and result.provider == "c"
    assert (len(first.jobs), len(second.jobs), len(third.jobs)) == (1, 3, 1)
    assert len(sleeps.delays) == 2  # only between the attempts on b


async def test_every_attempt_is_counted_per_route_and_outcome() -> None:
    def count(route: str, outcome: str) -> float:
        value = REGISTRY.get_sample_value("sfumato_upstream_attempts_total",
                                          {"model": "gpt-image-1-5", "route": route, "outcome": outcome})
        return value or 0.0

    before = {key: count(*key) for key in (("m-a", "upstream_auth_failed"), ("m-b", "upstream_error"), ("m-b", "ok"))}
    await run(provider(live(Scripted("m-a", UpstreamAuthFailed("k"))), live(Scripted("m-b", UpstreamError("x")))))
    after = {key: count(*key) for key in before}
    assert {key: after[key] - before[key] for key in before} == {
        ("m-a", "upstream_auth_failed"): 1, ("m-b", "upstream_error"): 1, ("m-b", "ok"): 1}


async def test_the_last_error_is_reported_when_every_route_fails() -> None:
    result = await run(provider(live(Scripted("a", UpstreamAuthFailed("k"))),
                                live(Scripted("b", *[UpstreamError("down")] * 3))))
    assert isinstance(result, ProviderError) and result.code == "upstream_error"


async def test_a_retry_after_longer_than_allowed_fails_over_without_waiting() -> None:
    first, second, sleeps = Scripted("a", UpstreamRateLimited("later", retry_after=600)), Scripted("b"), Sleeps()
    result = await run(provider(live(first), live(second), sleeps=sleeps))
    assert isinstance(result, Outputs) and result.provider == "b" and sleeps.delays == []


async def test_an_attempt_over_its_time_limit_is_an_upstream_timeout_and_retried() -> None:
    adapter = Scripted("a", "hang")
    result = await run(provider(live(adapter, timeout_seconds=0.05)))
    assert isinstance(result, Outputs) and len(adapter.jobs) == 2


def test_priority_orders_routes_and_weight_spreads_within_a_priority() -> None:
    a, b, c = (live(Scripted(n), priority=p, weight=w) for n, p, w in (("a", 1, 1), ("b", 0, 99), ("c", 0, 1)))
    rng = random.Random(5)
    firsts = [ordered([a, b, c], rng)[0].key for _ in range(200)]
    assert all(ordered([a, b, c], rng)[-1].key == "a" for _ in range(20))
    assert firsts.count("b") > 180 and "c" in firsts


async def test_routes_that_cannot_serve_the_job_are_skipped() -> None:
    edits_only = Scripted("relay", edits_only=True)
    result = await run(provider(live(edits_only)))
    assert isinstance(result, ProviderError) and result.code == "no_route" and edits_only.jobs == []


async def test_checkpoints_are_tagged_with_the_route_and_reused_when_retrying() -> None:
    saved: list[dict[str, Any]] = []

    async def checkpoint(state: dict[str, Any]) -> None:
        saved.append(state)

    adapter = Scripted("a", "checkpoint")
    job = dataclasses.replace(make_job("gpt-image-1-5"), checkpoint=checkpoint)
    result = await run(provider(live(adapter)), job)
    assert isinstance(result, Outputs)
    assert saved == [{"route": "a", "request_id": "up-1"}]
    assert adapter.jobs[0].resume is None and adapter.jobs[1].resume == saved[0]


async def test_a_resumed_job_starts_on_its_route_and_only_that_route_sees_the_state() -> None:
    first, second = Scripted("a", UpstreamAuthFailed("k")), Scripted("b", UpstreamAuthFailed("k"))
    state = {"route": "b", "request_id": "up-9"}
    await run(provider(live(first), live(second)), make_job("gpt-image-1-5", resume=state))
    assert second.jobs[0].resume == state and first.jobs[0].resume is None


def test_breaker_opens_after_consecutive_failures_and_half_opens_after_the_reset() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=3, reset_seconds=30, clock=clock)
    for _ in range(2):
        breaker.failure()
    breaker.success()  # a success resets the count
    for _ in range(3):
        assert breaker.allow()
        breaker.failure()
    assert breaker.state is State.OPEN and not breaker.allow()
    clock.now = 29.9
    assert not breaker.allow()
    clock.now = 30
    assert breaker.state is State.HALF_OPEN
    assert breaker.allow() and not breaker.allow()  # one trial at a time
    breaker.failure()
    assert breaker.state is State.OPEN
    clock.now = 61
    assert breaker.allow()
    breaker.success()
    assert breaker.state is State.CLOSED and breaker.allow()


def test_a_canceled_trial_frees_the_half_open_slot() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=1, reset_seconds=1, clock=clock)
    breaker.failure()
    clock.now = 1
    assert breaker.allow() and not breaker.allow()
    breaker.release()
    assert breaker.allow()


async def test_an_open_circuit_skips_the_route_until_a_trial_succeeds() -> None:
    clock = Clock()
    flaky, backup = Scripted("a", *[UpstreamError("down")] * 3), Scripted("b")
    p = provider(live(flaky, clock, breaker={"failures": 3, "reset_seconds": 10}), live(backup, clock))
    assert isinstance(await run(p), Outputs)  # three failures on a open its circuit; b serves
    assert p.routes[0].breaker.state is State.OPEN
    assert isinstance(await run(p), Outputs)
    assert (len(flaky.jobs), len(backup.jobs)) == (3, 2)  # the open route was not called
    clock.now = 10
    assert (await run(p)).provider == "a"  # type: ignore[union-attr]
    assert p.routes[0].breaker.state is State.CLOSED


async def test_every_circuit_open_is_upstream_unavailable() -> None:
    clock = Clock()
    only = Scripted("a", UpstreamAuthFailed("k"))
    p = provider(live(only, clock, breaker={"failures": 1, "reset_seconds": 10}))
    await run(p)
    result = await run(p)
    assert isinstance(result, ProviderError) and result.code == "upstream_unavailable" and len(only.jobs) == 1


async def test_cancellation_propagates_and_releases_the_trial() -> None:
    clock = Clock()
    adapter = Scripted("a", UpstreamAuthFailed("k"), "hang")
    p = provider(live(adapter, clock, breaker={"failures": 1, "reset_seconds": 1}))
    await run(p)
    clock.now = 1
    task = asyncio.create_task(p.run(make_job("gpt-image-1-5")))
    while len(adapter.jobs) < 2:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert p.routes[0].breaker.allow()
