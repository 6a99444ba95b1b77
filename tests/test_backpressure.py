"""A busy database pool is backpressure, not an outage: 503 ``server_busy`` with ``Retry-After``,
told apart from 503 ``service_unavailable`` (the database cannot be reached)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text

from tests.conftest import new_customer, serve
from tests.helpers import create


async def test_an_exhausted_pool_answers_server_busy_and_recovers(
    make_deps: Callable[..., Any], backend: str
) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite writes queue in process, not on the pool; the pool settings are PostgreSQL's")
    deps = await make_deps(run_worker=False, database_pool_size=1, database_pool_overflow=0,
                           database_pool_timeout_seconds=0.2, auth_cache_seconds=60)
    async with serve(deps) as client:
        who = await new_customer(deps)
        assert (await client.get("/api/v1/account", headers=who.headers)).status_code == 200  # key cached
        async with deps.db.engine.connect() as held, deps.db.driver.transaction():  # each pool's only one
            await held.execute(text("SELECT 1"))
            busy = await create(client, who, model="qwen-image")  # the driver's path
            keyed = await create(client, who, model="qwen-image", client_request_id="k")  # the ORM's path
        after = await create(client, who, model="qwen-image")
    for answer in (busy, keyed):
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "server_busy" and answer.headers["retry-after"] == "1"
    assert after.status_code == 202, after.text



async def test_a_released_driver_connection_is_not_reset_but_its_transaction_is_rolled_back(
    make_deps: Callable[..., Any], backend: str
) -> None:
    """The driver's pool skips asyncpg's reset query (a round trip per release, for session
    state the hot paths never make), while a transaction left open still never leaks."""
    if backend == "sqlite":
        pytest.skip("the reset query is asyncpg's; SQLite's driver keeps its connections")
    deps = await make_deps(run_worker=False, database_pool_size=1)
    driver = deps.db.driver
    async with driver.connection() as conn:
        assert conn.get_reset_query() == ""
        backend_pid = conn.get_server_pid()
        await conn.execute("BEGIN")
        await conn.execute("CREATE TEMP TABLE left_open (x int)")  # never committed
    async with driver.connection() as again:  # the pool's only connection, released above
        assert again.get_server_pid() == backend_pid
        assert not again.is_in_transaction()
        assert await again.fetchval("SELECT to_regclass('pg_temp.left_open')") is None
