"""Cross-process signals on PostgreSQL: ``NOTIFY`` inside the transaction that made the change
(PostgreSQL delivers it only if that transaction commits), ``LISTEN`` in every worker.
SQLite has no such channel; there the in-process signal and polling do the work."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

TASK_QUEUED = "sfumato_task_queued"
CANCEL_REQUESTED = "sfumato_cancel_requested"

log = logging.getLogger("sfumato.worker")


async def notify(session: AsyncSession, channel: str, payload: str = "") -> None:
    """Queue a notification for when ``session``'s transaction commits (no-op on SQLite)."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(select(func.pg_notify(channel, payload)))


class PgListener:
    """Holds one ``LISTEN`` connection and reconnects when it drops; polling covers the gaps."""

    def __init__(self, url: str, handlers: dict[str, Callable[[str], None]], retry_seconds: float = 1.0):
        self._dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._handlers = handlers
        self._retry = retry_seconds

    def _dispatch(self, _conn: object, _pid: int, channel: str, payload: str) -> None:
        self._handlers[channel](payload)

    async def _listen_once(self, stop: asyncio.Event) -> None:
        conn = await asyncpg.connect(self._dsn, timeout=10)
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        try:
            for channel in self._handlers:
                await conn.add_listener(channel, self._dispatch)
            for handler in self._handlers.values():  # anything sent while we were away
                handler("")
            waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(lost.wait())]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 5)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._listen_once(stop)
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log.warning("LISTEN connection failed (%s); retrying", exc.__class__.__name__)
            if not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._retry)
