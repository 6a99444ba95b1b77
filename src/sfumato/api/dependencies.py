"""FastAPI dependencies: the ``Deps`` object, the authenticated principal, the rate limit."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from cachetools import TTLCache
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError

from sfumato.accounts import keys
from sfumato.accounts import queries as key_queries
from sfumato.deps import Deps
from sfumato.errors import RateLimited, Unauthorized

log = logging.getLogger("sfumato.api")


async def get_deps(request: Request) -> Deps:  # async: FastAPI runs a sync one in a thread
    deps: Deps = request.app.state.deps
    return deps


DepsDep = Annotated[Deps, Depends(get_deps)]
_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer sk-sf_…`")


@dataclass(frozen=True, slots=True)
class Principal:
    account_id: str
    key_hash: str


class KeyCache:
    """Keys this process checked recently (hash → account), for ``SFUMATO_AUTH_CACHE_SECONDS``.

    Saves a database round trip on most requests; a revoked key is refused everywhere within
    that time. Only good keys are kept, so guessing cannot fill it; it is bounded in size.
    """

    def __init__(self, seconds: float, timer: Callable[[], float]):
        self._cache: TTLCache[str, str] | None = (
            TTLCache(maxsize=100_000, ttl=seconds, timer=timer) if seconds > 0 else None
        )

    async def account_for(self, deps: Deps, secret: str, digest: str) -> str | None:
        """The account of ``secret`` (whose ``keys.hash_key`` is ``digest``), or ``None``."""
        if self._cache is not None and (hit := self._cache.get(digest)) is not None:
            return hit
        account_id = await key_queries.authenticate(deps.db.driver, secret)
        if account_id is not None and self._cache is not None:
            self._cache[digest] = account_id
        return account_id


async def principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """The dependency (``_bearer`` puts the scheme in the OpenAPI document); :func:`authenticate` does the work."""
    return await _principal_of(request, credentials.credentials if credentials is not None else None)


async def authenticate(request: Request) -> Principal:
    """:func:`principal` without FastAPI's dependency machinery (``api/hot_routes.py``): the
    bearer token read as ``HTTPBearer(auto_error=False)`` reads it, then the same checks."""
    scheme, secret = get_authorization_scheme_param(request.headers.get("authorization"))
    return await _principal_of(request, secret if scheme.lower() == "bearer" and secret else None)


async def _principal_of(request: Request, secret: str | None) -> Principal:
    if secret is None:
        raise Unauthorized("Send your API key as `Authorization: Bearer sk-…`.")
    account_id, digest = None, keys.hash_key(secret)
    if keys.well_formed(secret):  # a mistyped or made-up key costs no database round trip
        cache: KeyCache = request.app.state.key_cache
        account_id = await cache.account_for(request.app.state.deps, secret, digest)
    if account_id is None:
        raise Unauthorized("The API key is not valid or has been revoked.", invalid_token=True)
    return Principal(account_id, digest)


PrincipalDep = Annotated[Principal, Depends(principal)]


class CreateRateLimit:
    """Per-key limit on task creation: in Redis when configured (shared by every API process),
    else in process memory. A sliding-window counter: constant work and memory per key.

    If Redis cannot be reached the limit *fails open* (the request goes on, a warning is
    logged): the limit protects capacity, while credits, which protect money, are enforced by
    the database either way. An outage of the limiter should not become an outage of the API.
    """

    def __init__(self, spec: str, redis_url: str | None = None):
        self.item: RateLimitItem = parse(spec)
        storage: Storage = MemoryStorage()
        if redis_url:
            storage = RedisStorage(
                "async+" + redis_url, implementation="redispy", wrap_exceptions=True, key_prefix="sfumato",
                socket_connect_timeout=0.5, socket_timeout=0.5,
            )
        self.limiter = SlidingWindowCounterRateLimiter(storage)

    async def ping(self) -> None:
        """Raise unless the storage answers (readiness)."""
        if not await self.limiter.storage.check():
            raise ConnectionError("rate limit storage did not answer")

    async def check(self, key: str) -> None:
        try:
            if await self.limiter.hit(self.item, "create-task", key):
                return
            stats = await self.limiter.get_window_stats(self.item, "create-task", key)
        except StorageError as exc:
            log.warning("rate limit storage unavailable (%s); allowing the request", exc.storage_error)
            return
        raise RateLimited(int(stats.reset_time - time.time()) + 1)


async def create_rate_limit(request: Request, who: PrincipalDep) -> Principal:
    limiter: CreateRateLimit = request.app.state.create_rate_limit
    await limiter.check(who.key_hash)
    return who


async def authenticate_create(request: Request) -> Principal:
    """:func:`create_rate_limit` without the dependency machinery."""
    who = await authenticate(request)
    limiter: CreateRateLimit = request.app.state.create_rate_limit
    await limiter.check(who.key_hash)
    return who


RateLimitedPrincipal = Annotated[Principal, Depends(create_rate_limit)]
