"""Routing is itself a provider: ``RoutedProvider.run`` tries a model's routes in order, with a
time limit per attempt, retries with exponential backoff and full jitter on transient errors
(honouring ``Retry-After``), failover to the next route, and a circuit breaker per route.

Adapters never retry; they classify (``providers/errors.py``). What the router does with a
``ProviderError``: ``retryable`` → wait and ask the same route again (up to
``retry.max_attempts``), then fail over; ``route_fault`` → fail over at once; neither (a
validation or content-policy refusal) → stop, since no route would answer differently.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sfumato import metrics
from sfumato.providers.base import Job, Outputs, Provider, ProviderError
from sfumato.providers.breaker import CircuitBreaker, State
from sfumato.providers.errors import NoRoute, UpstreamTimeout, UpstreamUnavailable
from sfumato.providers.routes import RetryConfig, Route

log = logging.getLogger("sfumato.providers")
CIRCUIT_GAUGE = {State.CLOSED: 0, State.HALF_OPEN: 1, State.OPEN: 2}
Sleep = Callable[[float], Awaitable[None]]


class Adapter(Provider, Protocol):
    def supports(self, job: Job) -> bool:
        """Whether this upstream can serve the job at all (an edit-only API cannot do text-to-image)."""
        ...


@dataclass
class LiveRoute:
    """A configured route with credentials: its adapter and its breaker (shared by all tasks)."""

    route: Route
    adapter: Adapter
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)

    @property
    def key(self) -> str:
        return self.route.key


def backoff(policy: RetryConfig, attempt: int, retry_after: float | None, rng: random.Random) -> float:
    """Full jitter (uniform in [0, min(max, base·2^(attempt-1))]), but never sooner than the
    upstream's ``Retry-After``."""
    ceiling = min(policy.max_seconds, policy.base_seconds * 2 ** (attempt - 1))
    delay = rng.uniform(0, ceiling)
    return max(delay, retry_after or 0.0)


def ordered(routes: list[LiveRoute], rng: random.Random) -> list[LiveRoute]:
    """Ascending priority; within one priority a weighted random order (weights spread load)."""
    groups: dict[int, list[LiveRoute]] = {}
    for index, live in enumerate(routes):
        priority = live.route.priority if live.route.priority is not None else index
        groups.setdefault(priority, []).append(live)
    result: list[LiveRoute] = []
    for priority in sorted(groups):
        pool = list(groups[priority])
        while pool:
            pick = rng.choices(pool, weights=[live.route.weight for live in pool])[0]
            pool.remove(pick)
            result.append(pick)
    return result


class RoutedProvider:
    """The provider a model with live routes gets from the registry."""

    def __init__(self, model_id: str, routes: list[LiveRoute], *, sleep: Sleep = asyncio.sleep,
                 rng: random.Random | None = None):
        self.model_id = model_id
        self.routes = routes
        self.name = "+".join(dict.fromkeys(live.adapter.name for live in routes))
        self.supports_cancel = all(live.adapter.supports_cancel for live in routes)
        self._sleep = sleep
        self._rng = rng or random.Random()

    def _plan(self, job: Job) -> list[LiveRoute]:
        plan = [live for live in ordered(self.routes, self._rng) if live.adapter.supports(job)]
        resumed = (job.resume or {}).get("route")
        return sorted(plan, key=lambda live: live.key != resumed)  # an earlier attempt's route first

    async def run(self, job: Job) -> Outputs:
        plan = self._plan(job)
        if not plan:
            kind = "an edit" if job.references else "a text-to-image request"
            raise NoRoute(f"No configured route for {self.model_id} can serve {kind}.")
        error: ProviderError | None = None
        for live in plan:
            if not live.breaker.allow():
                metrics.UPSTREAM_SKIPPED.labels(self.model_id, live.key).inc()
                self._report(live)
                error = error or UpstreamUnavailable(f"The upstream route {live.key} is failing; its circuit is open.")
                continue
            try:
                return await self._on_route(live, job)
            except ProviderError as exc:
                if not exc.failover:
                    raise
                log.warning("route %s of %s failed (%s); trying the next", live.key, self.model_id, exc.code)
                error = exc
        assert error is not None
        raise error

    async def _on_route(self, live: LiveRoute, job: Job) -> Outputs:
        """Attempts on one route (the breaker already let the first through)."""
        policy = live.route.retry
        resume = job.resume if (job.resume or {}).get("route") == live.key else None
        attempt = 0
        while True:
            attempt += 1
            saved: dict[str, Any] = {}
            try:
                outputs = await self._attempt(live, job, resume, saved)
            except ProviderError as exc:
                if not exc.failover:
                    live.breaker.success()  # the upstream is healthy; it refused this request
                    self._report(live)
                    raise
                live.breaker.failure()
                self._report(live)
                delay = backoff(policy, attempt, exc.retry_after, self._rng)
                if (not exc.retryable or attempt >= policy.max_attempts or not live.breaker.allow()
                        or (exc.retry_after or 0) > policy.max_retry_after_seconds):
                    raise
                log.info("route %s: %s on attempt %d; retrying in %.2f s", live.key, exc.code, attempt, delay)
                # a submitted upstream request is polled again rather than paid for twice, unless the
                # attempt's time limit canceled it (adapters cancel their upstream work when canceled)
                resume = None if isinstance(exc, _AttemptTimedOut) else (dict(saved) or resume)
                await self._sleep(delay)
            except asyncio.CancelledError:
                live.breaker.release()
                raise
            else:
                live.breaker.success()
                self._report(live)
                return outputs

    def _report(self, live: LiveRoute) -> None:
        metrics.UPSTREAM_CIRCUIT.labels(self.model_id, live.key).set(CIRCUIT_GAUGE[live.breaker.state])

    async def _attempt(self, live: LiveRoute, job: Job, resume: dict[str, Any] | None,
                       saved: dict[str, Any]) -> Outputs:
        async def checkpoint(state: dict[str, Any]) -> None:
            saved.clear()
            saved.update({"route": live.key, **state})
            await job.checkpoint(dict(saved))

        attempt_job = dataclasses.replace(job, resume=resume, checkpoint=checkpoint)
        limit = live.route.timeout_seconds
        started, outcome = time.perf_counter(), "interrupted"
        try:
            async with asyncio.timeout(limit):
                outputs = await live.adapter.run(attempt_job)
            outcome = "ok"
            return outputs
        except TimeoutError as exc:
            outcome = "upstream_timeout"
            raise _AttemptTimedOut(f"The upstream route {live.key} did not finish within {limit:g} s.") from exc
        except ProviderError as exc:
            outcome = exc.code
            raise
        finally:
            metrics.UPSTREAM_ATTEMPTS.labels(self.model_id, live.key, outcome).inc()
            metrics.UPSTREAM_LATENCY.labels(self.model_id, live.key).observe(time.perf_counter() - started)


class _AttemptTimedOut(UpstreamTimeout):
    """The router's own time limit ended the attempt (as opposed to one slow HTTP call)."""
