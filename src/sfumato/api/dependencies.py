"""FastAPI dependencies: the ``Deps`` object, the authenticated principal, the rate limit."""

from __future__ import annotations

import functools
import hmac
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
from sfumato.accounts.queries import KeyPolicy
from sfumato.admin import key as admin_keys
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
    key: KeyPolicy | None = None
    """The key's own limits (models, rate limit, credit limit)."""


class KeyCache:
    """Keys this process checked recently (hash → policy), for ``SFUMATO_AUTH_CACHE_SECONDS``.

    Saves a database round trip on most requests; a key revoked (or an account disabled) by
    another process is refused within that time, by this one at once (:meth:`forget`). Only
    good keys are kept, so guessing cannot fill it; it is bounded in size.
    """

    def __init__(self, seconds: float, timer: Callable[[], float]):
        self._cache: TTLCache[str, KeyPolicy] | None = (
            TTLCache(maxsize=100_000, ttl=seconds, timer=timer) if seconds > 0 else None
        )

    async def policy_for(self, deps: Deps, secret: str, digest: str) -> KeyPolicy | None:
        """The policy of ``secret`` (whose ``keys.hash_key`` is ``digest``), or ``None``."""
        if self._cache is not None and (hit := self._cache.get(digest)) is not None:
            return hit
        policy = await key_queries.key_policy(deps.db.driver, secret)
        if policy is not None and self._cache is not None:
            self._cache[digest] = policy
        return policy

    def forget(self, *, account_id: str | None = None, key_id: str | None = None) -> None:
        """Drop the entries of an account (disabled) or a key (revoked): an operator's write is
        felt by this process at once. A scan, but operators' writes are rare."""
        if self._cache is None:
            return
        for digest, policy in list(self._cache.items()):
            if policy.account_id == account_id or policy.key_id == key_id:
                self._cache.pop(digest, None)


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
    policy, digest = None, keys.hash_key(secret)
    deps: Deps = request.app.state.deps
    if keys.well_formed(secret):  # a mistyped or made-up key costs no database round trip
        cache: KeyCache = request.app.state.key_cache
        policy = await cache.policy_for(deps, secret, digest)
    if policy is None:
        raise Unauthorized("The API key is not valid or has been revoked.", invalid_token=True)
    if policy.expired(deps.clock.now()):
        raise Unauthorized("The API key has expired.", invalid_token=True)
    return Principal(policy.account_id, digest, policy)


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

    async def check(self, key: str, spec: str | None = None) -> None:
        """``spec``: the key's own limit (``SFUMATO_RATE_LIMIT_CREATE``'s notation), if it has one."""
        item = self.item if spec is None else _parsed(spec)
        try:
            if await self.limiter.hit(item, "create-task", key):
                return
            stats = await self.limiter.get_window_stats(item, "create-task", key)
        except StorageError as exc:
            log.warning("rate limit storage unavailable (%s); allowing the request", exc.storage_error)
            return
        raise RateLimited(int(stats.reset_time - time.time()) + 1)


@functools.lru_cache(maxsize=1024)
def _parsed(spec: str) -> RateLimitItem:
    return parse(spec)


async def create_rate_limit(request: Request, who: PrincipalDep) -> Principal:
    limiter: CreateRateLimit = request.app.state.create_rate_limit
    await limiter.check(who.key_hash, who.key.rate_limit if who.key else None)
    return who


async def authenticate_create(request: Request) -> Principal:
    """:func:`create_rate_limit` without the dependency machinery."""
    who = await authenticate(request)
    limiter: CreateRateLimit = request.app.state.create_rate_limit
    await limiter.check(who.key_hash, who.key.rate_limit if who.key else None)
    return who


RateLimitedPrincipal = Annotated[Principal, Depends(create_rate_limit)]


# --- The operator's key (``/admin/v1``) ------------------------------------------------------

_admin_bearer = HTTPBearer(auto_error=False, scheme_name="AdminKey",
                           description="The operator's key: `Authorization: Bearer <SFUMATO_ADMIN_KEY>` "
                                       "(or the one `sfumato admin-key` prints).")


@dataclass(frozen=True, slots=True)
class Operator:
    actor: str
    """Who the audit log names: ``admin-key`` over HTTP."""


async def operator(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_admin_bearer)]
) -> Operator:
    """The admin key, compared in constant time (as SHA-256 digests, so the lengths match too).
    A customer key is refused here like any wrong key; the admin key is no customer key (it has
    no row in ``api_keys``), so ``/api/v1`` refuses it."""
    expected: bytes = request.app.state.admin_key_digest
    given = credentials.credentials if credentials is not None else ""
    if not given or not hmac.compare_digest(admin_keys.digest(given), expected):
        raise Unauthorized("Send the admin key as `Authorization: Bearer …` (`sfumato admin-key` prints it).",
                           invalid_token=bool(given))
    return Operator("admin-key")


OperatorDep = Annotated[Operator, Depends(operator)]
