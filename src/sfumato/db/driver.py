"""The hot paths' way to the database: the driver itself, not the ORM.

A task poll, a key check and a task create are a handful of statements each, run thousands of
times a second; through the async ORM each statement cost 0.4-0.6 ms of CPU (session, unit of
work, statement compilation, the greenlet bridge), through the driver 0.05 ms. The ORM keeps
the schema, the migrations and every other path; the hot paths' SQL lives beside their domain
(``tasks/queries.py``) and runs here:

- **PostgreSQL**: an ``asyncpg`` pool of its own; asyncpg prepares each statement once per
  connection and reuses it. One statement is one round trip, outside any transaction when alone.
- **SQLite**: the stdlib ``sqlite3`` with the same pragmas as the engine's connections. A
  point read, or a write transaction once this process's writer lock is its turn, runs right
  on the event loop: it takes microseconds (WAL, no disk flush per commit), less than a hop to
  a thread. Only when the file is busy (another process writing, a checkpoint) does it wait,
  and then on a thread of its own, never on the loop: one writer thread, whose transactions
  run whole in one hop, and one reader thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy.engine import make_url

from sfumato.errors import ServerBusy

T = TypeVar("T")
Row = dict[str, Any]
Steps = Generator[tuple[str, tuple[Any, ...]], "Row | None", T]
"""A transaction written once for both databases: it yields ``(sql, args)`` (PostgreSQL's
``$n`` parameters) and is sent each statement's first row back (``None`` if it gave none);
what it returns is the transaction's result. :meth:`SqliteDriver.run` and :meth:`PgDriver.run`
drive it, so its logic is one function and only the I/O differs."""
_PG_PARAM = re.compile(r"\$(\d+)")


def sqlite_sql(sql: str) -> str:
    """The same statement with SQLite's numbered parameters (``$1`` → ``?1``)."""
    return _PG_PARAM.sub(r"?\1", sql)


def sqlite_value(value: Any) -> Any:
    """A parameter as the ORM stores it on SQLite: naive-UTC text times, JSON as text."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, dict | list):
        return json.dumps(value)
    return value


def pg_value(value: Any) -> Any:
    """A parameter for asyncpg without codecs: JSON (for ``jsonb``) as text."""
    return json.dumps(value) if isinstance(value, dict | list) else value


CHECKPOINT_EVERY = 200


class SqliteDriver:
    is_sqlite = True

    def __init__(self, path: str, writer_lock: AbstractAsyncContextManager[Any], busy_timeout_ms: int):
        self._path, self._busy = path, busy_timeout_ms
        self._writer_lock = writer_lock
        self._write_thread = ThreadPoolExecutor(1, thread_name_prefix="sfumato-sqlite-writer")
        self._read_thread = ThreadPoolExecutor(1, thread_name_prefix="sfumato-sqlite-reader")
        self._conns: dict[str, sqlite3.Connection] = {}
        self._since_checkpoint = 0

    def _conn(self, role: str) -> sqlite3.Connection:
        conn = self._conns.get(role)
        if conn is None:
            inline = role.startswith("inline")
            busy = 0 if inline else self._busy
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=busy / 1000)
            conn.row_factory = sqlite3.Row
            for pragma in ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA foreign_keys=ON",
                           f"PRAGMA busy_timeout={busy}"):
                conn.execute(pragma)
            if inline:  # a checkpoint syncs the disk: done on the writer thread instead (_checkpoint)
                conn.execute("PRAGMA wal_autocheckpoint=0")
            self._conns[role] = conn
        return conn

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(conn)`` (one point read) right here on the event loop, where it takes
        microseconds (WAL: readers never wait for the writer) and a hop to a thread cost more
        than the read; on the rare ``SQLITE_BUSY`` (a WAL checkpoint) it waits its turn on the
        reader thread instead, so the loop itself never waits on the file."""
        try:
            return fn(self._conn("inline"))
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
        return await asyncio.get_running_loop().run_in_executor(self._read_thread, lambda: fn(self._conn("read")))

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        def one(conn: sqlite3.Connection) -> Row | None:
            row = conn.execute(sql, args).fetchone()
            return dict(row) if row is not None else None

        return await self.read(one)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(conn)`` as one ``BEGIN IMMEDIATE`` transaction: committed if it returns, rolled
        back if it raises. This process's writers take turns on the writer lock, so the write
        lock of the file is normally free: the transaction then runs right here on the loop (a
        few statements and a commit to the WAL, no disk flush: tens of microseconds, less than
        a hop to a thread). If another process holds the file, it waits on the writer thread."""
        def transaction(conn: sqlite3.Connection) -> T:
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        async with self._writer_lock:
            conn = self._conn("inline-write")
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
            else:
                result = transaction(conn)
                self._checkpoint()
                return result

            def waiting() -> T:
                conn = self._conn("write")
                conn.execute("BEGIN IMMEDIATE")
                return transaction(conn)

            return await asyncio.get_running_loop().run_in_executor(self._write_thread, waiting)

    async def run(self, steps: Steps[T]) -> T:
        """Drive ``steps`` as one transaction, whole in one hop to the writer's thread."""
        def drive(conn: sqlite3.Connection) -> T:
            try:
                sql, args = next(steps)
                while True:
                    row = conn.execute(sqlite_sql(sql), tuple(sqlite_value(a) for a in args)).fetchone()
                    sql, args = steps.send(dict(row) if row is not None else None)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

        return await self.write(drive)

    def _checkpoint(self) -> None:
        """Every ``CHECKPOINT_EVERY`` commits made on the loop, a passive checkpoint on the writer
        thread (it waits for no one and blocks no one): the WAL stays short, and its disk
        flush never runs on the loop."""
        self._since_checkpoint += 1
        if self._since_checkpoint >= CHECKPOINT_EVERY:
            self._since_checkpoint = 0
            self._write_thread.submit(lambda: self._conn("write").execute("PRAGMA wal_checkpoint(PASSIVE)"))

    async def close(self) -> None:
        for role in ("inline", "inline-write"):
            inline = self._conns.pop(role, None)
            if inline is not None:
                inline.close()
        for role, executor in (("write", self._write_thread), ("read", self._read_thread)):
            conn = self._conns.pop(role, None)
            if conn is not None:
                await asyncio.get_running_loop().run_in_executor(executor, conn.close)
            executor.shutdown(wait=False)


class PgDriver:
    is_sqlite = False

    def __init__(self, url: str, max_size: int, acquire_timeout: float):
        self._dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._max, self._acquire_timeout = max_size, acquire_timeout
        self._pool: Any = None
        self._opening = asyncio.Lock()

    async def pool(self) -> Any:
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    import asyncpg

                    class HotPathConnection(asyncpg.Connection):  # type: ignore[misc]
                        def get_reset_query(self) -> str:
                            """Nothing to reset: asyncpg's default (advisory unlock, ``CLOSE ALL``,
                            ``UNLISTEN *``, ``RESET ALL``) is a round trip on *every* release,
                            for state these connections never make (the hot paths' statements
                            take no advisory lock, open no cursor, never LISTEN or SET). An open
                            transaction is still rolled back on release (``Connection._reset``)."""
                            return ""

                    self._pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=self._max,
                                                           max_inactive_connection_lifetime=60,
                                                           connection_class=HotPathConnection)
        return self._pool

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        """A pooled connection; every one busy past the timeout is backpressure (``ServerBusy``)."""
        pool = await self.pool()
        try:
            conn = await pool.acquire(timeout=self._acquire_timeout)
        except TimeoutError:
            raise ServerBusy() from None
        try:
            yield conn
        finally:
            await pool.release(conn)

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        async with self.connection() as conn:
            row = await conn.fetchrow(sql, *args)
        return dict(row) if row is not None else None

    async def fetch(self, sql: str, *args: Any) -> Sequence[Row]:
        async with self.connection() as conn:
            return [dict(r) for r in await conn.fetch(sql, *args)]

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        async with self.connection() as conn, conn.transaction():
            yield conn

    async def run(self, steps: Steps[T]) -> T:
        """Drive ``steps`` as one transaction: one round trip per statement, prepared once."""
        async with self.transaction() as conn:
            try:
                sql, args = next(steps)
                while True:
                    row = await conn.fetchrow(sql, *(pg_value(a) for a in args))
                    sql, args = steps.send(dict(row) if row is not None else None)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


Driver = SqliteDriver | PgDriver


def driver_for(url: str, writer_lock: AbstractAsyncContextManager[Any], *, busy_timeout_ms: int,
               pool_size: int, pool_timeout: float) -> Driver:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return SqliteDriver(parsed.database or ":memory:", writer_lock, busy_timeout_ms)
    return PgDriver(url, pool_size, pool_timeout)
