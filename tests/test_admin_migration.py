"""Migration 0006 makes account names unique without failing on a database that already holds
duplicates (``sfumato accounts create acme`` twice, before it): the oldest keeps the name, the
others get a free suffix. On both databases, from a schema at 0005."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import Connection

from sfumato.db import migrate
from sfumato.db.database import Database
from sfumato.settings import Settings
from tests.conftest import PG_ADMIN_URL, _pg_admin, database_name


@pytest.fixture(params=["sqlite", "postgres"])
async def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield Settings(data_dir=tmp_path, database_url=None).resolved_database_url
        return
    name = database_name()
    error = await _pg_admin(f'CREATE DATABASE "{name}"')
    if error:
        pytest.skip(error)
    yield Settings(database_url=f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}").resolved_database_url
    await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _to(revision: str, url: str):  # type: ignore[no-untyped-def]
    def run(connection: Connection) -> None:
        cfg = migrate.alembic_config(url)
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)
    return run


async def test_duplicate_names_survive_the_upgrade(fresh_url: str) -> None:
    db = Database(fresh_url)
    try:
        async with db.engine.connect() as conn:
            await conn.run_sync(_to("0005", fresh_url))
            start = datetime(2026, 1, 1, tzinfo=UTC)
            for i, name in enumerate(["acme", "acme", "acme-2", "acme", "solo"]):
                at = start + timedelta(minutes=i)
                await conn.execute(text("INSERT INTO accounts (id, name, balance, created_at) "
                                        "VALUES (:id, :name, 0, :at)"),
                                   {"id": f"acct_{i}", "name": name,
                                    "at": at.replace(tzinfo=None) if db.is_sqlite else at})
            await conn.commit()
        await migrate.upgrade(db)
        async with db.engine.connect() as conn:
            names = dict((await conn.execute(text("SELECT id, name FROM accounts"))).all())
        assert names == {"acct_0": "acme", "acct_1": "acme-3", "acct_2": "acme-2", "acct_3": "acme-4",
                         "acct_4": "solo"}
    finally:
        await db.dispose()
