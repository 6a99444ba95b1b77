"""The Alembic migrations produce exactly the schema the models describe, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from sfumato.db import migrate
from sfumato.db.models import Base


def _diff(connection) -> list:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return compare_metadata(context, Base.metadata)


async def test_migrated_schema_matches_the_models(deps) -> None:
    async with deps.db.engine.connect() as conn:
        differences = await conn.run_sync(_diff)
    assert differences == []


async def test_upgrade_is_idempotent(deps) -> None:
    await migrate.upgrade(deps.db)
    await migrate.upgrade(deps.db)
    async with deps.db.engine.connect() as conn:
        assert await conn.run_sync(_diff) == []
