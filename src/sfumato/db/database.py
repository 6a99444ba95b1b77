"""Engine and sessions. The caller owns the transaction: ``async with db.write() as s``.

On SQLite every write transaction starts with ``BEGIN IMMEDIATE``: a deferred transaction that
reads and then writes fails at once with SQLITE_BUSY instead of waiting on ``busy_timeout``.
Reads stay deferred so polling never queues behind writers (WAL lets them run side by side).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from sfumato.db.driver import Driver, driver_for

SQLITE_BUSY_TIMEOUT_MS = 30_000
CHANGED_KEY = "changed_tasks"
TASK_CHANGED = "sfumato_task_changed"
"""NOTIFY channel: a comma-separated list of task ids whose state changed."""


def _payloads(ids: list[str], limit: int = 7000) -> list[str]:
    """Comma-joined ids in pieces under NOTIFY's 8,000-byte payload limit."""
    pieces, current = [], ""
    for task_id in ids:
        if current and len(current) + 1 + len(task_id) > limit:
            pieces.append(current)
            current = ""
        current = f"{current},{task_id}" if current else task_id
    return [*pieces, current] if current else pieces


def mark_changed(session: AsyncSession, task_id: str) -> None:
    """Note that this transaction changed ``task_id``'s state (see ``Database.write``)."""
    session.info.setdefault(CHANGED_KEY, set()).add(task_id)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # the "begin" listener below emits BEGIN itself
    cursor = dbapi_connection.cursor()
    for pragma in (
        "PRAGMA journal_mode=WAL",
        "PRAGMA synchronous=NORMAL",
        "PRAGMA foreign_keys=ON",
        f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
    ):
        cursor.execute(pragma)
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get("sqlite_immediate", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Database:
    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 10, pool_overflow: int = 10,
                 pool_timeout: float = 10.0):
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self.engine: AsyncEngine = create_async_engine(
                url, echo=echo, pool_size=8, max_overflow=8, pool_timeout=max(pool_timeout, 60),
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            )
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin)
            write_engine = self.engine.execution_options(sqlite_immediate=True)
        else:
            self.engine = create_async_engine(
                # No pre-ping: it costs a round trip per checkout. A connection broken by a
                # database restart fails its request (503) and is discarded by the pool.
                url, echo=echo, pool_size=pool_size, max_overflow=pool_overflow, pool_timeout=pool_timeout
            )
            write_engine = self.engine
        self._read = async_sessionmaker(self.engine, expire_on_commit=False)
        self._write = async_sessionmaker(write_engine, expire_on_commit=False)
        self.on_commit: Callable[[set[str]], None] | None = None
        """Called with the ids of the tasks a write transaction changed, after it committed."""
        self._writer: contextlib.AbstractAsyncContextManager[Any] = (
            asyncio.Lock() if self.is_sqlite else contextlib.nullcontext())
        """SQLite has one writer: this process's writers queue here, in order, instead of
        colliding on the file lock and sleeping in SQLite's busy handler, whose back-off grows to
        100 ms per retry (2,000 tasks ending at once: 23 s instead of 28-42 s, and steadier, in
        bench/slow_tasks.py). Other processes still meet ``busy_timeout``."""
        self.driver: Driver = driver_for(url, self._writer, busy_timeout_ms=SQLITE_BUSY_TIMEOUT_MS,
                                         pool_size=pool_size + pool_overflow, pool_timeout=pool_timeout)
        """The hot paths' own way in (``db/driver.py``): the driver, without the ORM."""

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A write transaction, committed when the block ends without an exception. Tasks whose
        state it changed (``changed_tasks``) are announced once it has committed: on PostgreSQL
        by a NOTIFY inside the transaction (delivered on commit), in process by ``on_commit``."""
        async with self._writer, self._write() as session, session.begin():
            yield session
            changed = session.info.pop(CHANGED_KEY, None)
            if changed and not self.is_sqlite:
                for payload in _payloads(sorted(changed)):
                    await session.execute(select(func.pg_notify(TASK_CHANGED, payload)))
        if changed and self.on_commit is not None:
            self.on_commit(changed)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self._read() as session, session.begin():
            yield session

    def announce(self, task_ids: set[str]) -> None:
        """Tell this process's watchers that a transaction committed outside ``write()`` (the
        driver's) changed these tasks; other processes hear its ``NOTIFY``."""
        if self.on_commit is not None:
            self.on_commit(task_ids)

    async def dispose(self) -> None:
        await self.driver.close()
        await self.engine.dispose()
