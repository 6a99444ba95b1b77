"""The one HTTP client every adapter shares (aiohttp; see docs/benchmarks.md for why).

It is created lazily inside the running event loop (an aiohttp session belongs to one loop)
and closed by the app's lifespan. Transport failures become ``ProviderError`` subclasses here,
once, so that adapters only classify what an upstream *answered*.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any

import aiohttp

from sfumato.providers.errors import UpstreamBadResponse, UpstreamTimeout, UpstreamUnavailable

MAX_JSON_BYTES = 64 * 1024 * 1024
"""A JSON answer larger than this is refused (base64 images of 16 outputs fit well inside)."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: dict[str, str]
    """Lower-cased header names."""
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise UpstreamBadResponse(f"The upstream answered HTTP {self.status} with malformed JSON.") from exc

    def json_object(self) -> dict[str, Any]:
        data = self.json()
        if not isinstance(data, dict):
            raise UpstreamBadResponse(f"The upstream answered HTTP {self.status} with JSON that is not an object.")
        return data

    @property
    def retry_after(self) -> float | None:
        return retry_after(self.headers)


def retry_after(headers: dict[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` (OpenAI), else ``Retry-After`` (seconds or an
    HTTP date); ``None`` when absent or unreadable."""
    if "retry-after-ms" in headers:
        try:
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value.strip() else None
        return None if parsed is None else max(0.0, parsed.timestamp() - time.time())


class UpstreamHttp:
    """A lazily created ``aiohttp.ClientSession``: no redirects, no proxies from the
    environment, a connection cap. Per-request time limits come from the caller's route."""

    def __init__(self, *, max_connections: int = 256):
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0)
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False, raise_for_status=False)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def request(self, method: str, url: str, *, time_limit: float, max_bytes: int = MAX_JSON_BYTES,
                      **kwargs: Any) -> Answer:
        """Send one request and read its whole body (at most ``max_bytes``)."""
        limit = aiohttp.ClientTimeout(total=time_limit, sock_connect=min(time_limit, 10.0))
        try:
            async with self.session().request(method, url, timeout=limit, allow_redirects=False, **kwargs) as r:
                body = await read_capped(r, max_bytes)
                headers = {k.lower(): v for k, v in r.headers.items()}
                return Answer(r.status, headers, body)
        except TimeoutError as exc:
            raise UpstreamTimeout(f"The upstream did not answer {method} within {time_limit:g} s.") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(f"The connection to the upstream failed ({exc.__class__.__name__}).") from exc


    @contextlib.asynccontextmanager
    async def stream(self, method: str, url: str, *, time_limit: float, **kwargs: Any
                     ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send one request and hand over the response unread (an event stream); the time limit
        covers the whole body. A connection that fails or breaks mid-body is classified as in
        :meth:`request`."""
        limit = aiohttp.ClientTimeout(total=time_limit, sock_connect=min(time_limit, 10.0))
        try:
            async with self.session().request(method, url, timeout=limit, allow_redirects=False, **kwargs) as r:
                yield r
        except TimeoutError as exc:
            raise UpstreamTimeout(f"The upstream did not finish {method} within {time_limit:g} s.") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(f"The connection to the upstream failed ({exc.__class__.__name__}).") from exc


async def read_capped(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    """The body, refused as soon as it passes ``max_bytes`` (never buffered beyond it)."""
    declared = response.content_length
    if declared is not None and declared > max_bytes:
        raise UpstreamBadResponse(f"The upstream answer is larger than {max_bytes} bytes.")
    chunks, total = [], 0
    async for chunk in response.content.iter_chunked(65536):
        total += len(chunk)
        if total > max_bytes:
            raise UpstreamBadResponse(f"The upstream answer is larger than {max_bytes} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


async def best_effort(coro: Awaitable[Any]) -> None:
    """Run a fire-and-forget upstream call (a cancel) to completion even while the caller is
    being cancelled, without letting its failure mask the caller's own outcome. The call
    carries its own short time limit."""
    with contextlib.suppress(BaseException):  # a failed cancel changes nothing for the caller
        await asyncio.shield(asyncio.ensure_future(coro))
