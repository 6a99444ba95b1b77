"""Building jobs and routed providers against a fake, without the database or the API."""

from __future__ import annotations

import io
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from sfumato.catalog import load_catalog
from sfumato.providers.base import Job, Reference
from sfumato.providers.breaker import CircuitBreaker
from sfumato.providers.factory import live_route
from sfumato.providers.http import UpstreamHttp
from sfumato.providers.router import LiveRoute, RoutedProvider
from sfumato.providers.routes import Route
from tests.upstreams.server import image_bytes

CATALOG = load_catalog()


def make_job(model_id: str, prompt: str = "a red fox in fresh snow", params: dict[str, str] | None = None,
             refs: tuple[Reference, ...] = (), resume: dict[str, Any] | None = None) -> Job:
    """A job as the runner builds it: the catalog's defaults filled in for absent params."""
    spec = CATALOG.get(model_id)
    assert spec is not None
    values = {p.key: p.default for p in spec.params if p.default is not None}
    values.update(params or {})
    return Job("task_test", spec, prompt, values, refs, request_id="req_test", resume=resume)


def reference(width: int = 64, height: int = 48, fmt: str = "png", index: int = 0) -> Reference:
    data = image_bytes(width, height, fmt)

    async def load() -> bytes:
        return data

    return Reference(f"file_{index}", "image", f"image/{fmt}", f"ref-{index}.{fmt}", width, height, load)


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


@dataclass
class Sleeps:
    """An injectable sleep that records how long the code under test wanted to wait."""

    delays: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def route(provider: str, upstream_model: str, base_url: str, **extra: Any) -> Route:
    values: dict[str, Any] = {"provider": provider, "upstream_model": upstream_model, "base_url": base_url,
                              "credentials_env": "FAKE_KEY", "timeout_seconds": 2.0, "poll_seconds": 0.01,
                              "retry": {"max_attempts": 3, "base_seconds": 0.01, "max_seconds": 0.05}}
    values.update(extra)
    return Route.model_validate(values)


@asynccontextmanager
async def routed(*routes: tuple[Route, str], sleep: Sleeps | None = None,
                 clock: Any = None) -> AsyncIterator[RoutedProvider]:
    """A ``RoutedProvider`` over ``(route, key)`` pairs, with the shared client closed after."""
    http = UpstreamHttp()
    lives: list[LiveRoute] = []
    for config, key in routes:
        made = live_route(config, http, {"FAKE_KEY": key})
        assert isinstance(made, LiveRoute), made
        if clock is not None:
            made.breaker = CircuitBreaker(config.breaker.failures, config.breaker.reset_seconds, clock)
        lives.append(made)
    provider = RoutedProvider(lives[0].route.provider, lives, sleep=sleep or Sleeps(), rng=random.Random(7))
    try:
        yield provider
    finally:
        await http.aclose()
