"""The composition root: builds every dependency once and wires the API and the worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from sfumato.admin import key as admin_keys
from sfumato.api.app import build_api
from sfumato.api.dependencies import CreateRateLimit, KeyCache
from sfumato.api.routes.files import upload_body_limit
from sfumato.catalog import load_catalog
from sfumato.clock import Clock, SystemClock
from sfumato.db import migrate
from sfumato.db.database import TASK_CHANGED, Database
from sfumato.db.notify import PgListener
from sfumato.deps import Deps
from sfumato.files.urls import MediaSigner
from sfumato.providers.factory import build_registry
from sfumato.settings import Settings
from sfumato.storage import LocalStorage, Storage
from sfumato.worker.loop import Worker
from sfumato.worker.signal import Signals

log = logging.getLogger("sfumato")


def secret_key(settings: Settings) -> bytes:
    """``SFUMATO_SECRET_KEY``, or a key generated once and kept (mode 0600) in the data dir."""
    if settings.secret_key:
        return settings.secret_key.encode()
    path: Path = settings.data_dir / "secret.key"
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip().encode()


def build_storage(settings: Settings) -> Storage:
    if settings.storage_backend == "s3":
        from sfumato.storage.s3 import S3Storage  # aioboto3 is only imported where it is used

        assert settings.s3_bucket is not None
        return S3Storage(settings.s3_bucket, spool_dir=settings.data_dir / "spool", prefix=settings.s3_prefix,
                         endpoint_url=settings.s3_endpoint_url, region=settings.s3_region)
    return LocalStorage(settings.storage_dir)


def build_deps(settings: Settings, *, clock: Clock | None = None) -> Deps:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    signals = Signals()
    db = Database(settings.resolved_database_url, pool_size=settings.database_pool_size,
                  pool_overflow=settings.database_pool_overflow, pool_timeout=settings.database_pool_timeout_seconds)
    db.on_commit = signals.tasks_changed
    return Deps(
        settings=settings,
        db=db,
        catalog=load_catalog(settings.catalog_dir),
        storage=build_storage(settings),
        signer=MediaSigner(secret_key(settings)),
        providers=build_registry(settings),
        clock=clock or SystemClock(),
        signals=signals,
    )


@asynccontextmanager
async def running_worker(deps: Deps) -> AsyncIterator[Worker]:
    """Run a worker in this event loop for the duration of the block."""
    stop = asyncio.Event()
    worker = Worker(deps)
    task = asyncio.create_task(worker.run(stop), name="sfumato-worker")
    try:
        yield worker
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@asynccontextmanager
async def listening_for_changes(deps: Deps) -> AsyncIterator[None]:
    """PostgreSQL: hear task changes committed by other processes (workers), so that event
    streams and waits in this one learn of them at once instead of at their next poll."""
    def changed(payload: str) -> None:
        if payload:
            deps.signals.tasks_changed(payload.split(","))
        else:  # (re)connected: something may have been missed, so everyone looks again
            deps.signals.wake_watchers()

    stop = asyncio.Event()
    task = asyncio.create_task(PgListener(deps.db.url, {TASK_CHANGED: changed}).run(stop))
    try:
        yield
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def create_app(settings: Settings | None = None, *, deps: Deps | None = None) -> FastAPI:
    """The ASGI app. With ``run_worker`` (the default) the worker runs in the same process."""
    deps = deps or build_deps(settings or Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await migrate.upgrade(deps.db)
        async with contextlib.AsyncExitStack() as stack:
            if deps.settings.run_worker:  # the doors that wait for their image hand it to this worker
                app.state.worker = await stack.enter_async_context(running_worker(deps))
            if not deps.db.is_sqlite:
                await stack.enter_async_context(listening_for_changes(deps))
            yield
            app.state.worker = None
        await deps.providers.aclose()
        await deps.storage.aclose()
        await deps.db.dispose()

    app = build_api(lifespan)
    app.state.deps = deps
    app.state.worker = None
    app.state.upload_limit = upload_body_limit(deps.settings)
    app.state.create_rate_limit = CreateRateLimit(deps.settings.rate_limit_create, deps.settings.redis_url)
    app.state.key_cache = KeyCache(deps.settings.auth_cache_seconds, lambda: deps.clock.now().timestamp())
    app.state.admin_key_digest = admin_keys.digest(admin_keys.admin_key(deps.settings))
    return app
