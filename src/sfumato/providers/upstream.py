"""What every adapter is built from: its route, the shared client, its secret, and the few
behaviours they share (output downloads from allowed hosts, polling an asynchronous upstream)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlsplit

from sfumato.providers.base import OutputImage
from sfumato.providers.download import fetch_image
from sfumato.providers.errors import UpstreamBadResponse
from sfumato.providers.http import UpstreamHttp
from sfumato.providers.routes import Route

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
MAX_POLL_SECONDS = 5.0


@dataclass(frozen=True)
class Upstream:
    route: Route
    http: UpstreamHttp
    secret: str
    base_url: str
    allowed_hosts: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    sleep: Sleep = asyncio.sleep

    @property
    def timeout(self) -> float:
        """Per HTTP call; the router's per-attempt limit bounds the whole attempt anyway."""
        return self.route.timeout_seconds

    def option(self, name: str, default: str = "") -> str:
        return str(self.route.options.get(name, default))

    async def download(self, url: str) -> OutputImage:
        return await fetch_image(self.http, url, allowed=self.allowed_hosts,
                                 max_bytes=self.route.max_download_bytes, time_limit=self.timeout)

    def same_api_host(self, url: object) -> str:
        """A URL the upstream handed back (status, result, cancel) before any credentials go to it:
        it must point at the route's own API host, or the key would leak elsewhere."""
        base = urlsplit(self.base_url)
        if isinstance(url, str):
            parts = urlsplit(url)
            if (parts.scheme, parts.netloc) == (base.scheme, base.netloc):
                return url
        raise UpstreamBadResponse("The upstream named a URL outside its own API host.")

    async def poll(self, check: Callable[[], Awaitable[T | None]]) -> T:
        """Call ``check`` until it returns a result, sleeping between calls: ``poll_seconds`` at
        first, doubling every third poll up to 5 s (the DashScope SDK's schedule). A sleeping
        coroutine holds no thread and no CPU; the router's attempt limit ends a poll that never
        finishes."""
        delay, polls = self.route.poll_seconds, 0
        while True:
            result = await check()
            if result is not None:
                return result
            await self.sleep(delay)
            polls += 1
            if polls % 3 == 0:
                delay = min(delay * 2, max(MAX_POLL_SECONDS, self.route.poll_seconds))
