"""Alembic environment. The app passes an open connection; the ``alembic`` CLI makes its own."""

import asyncio

from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine

from sfumato.db.models import Base

config = context.config
target_metadata = Base.metadata


def run_with(connection):
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async():
    engine = create_async_engine(config.get_main_option("sqlalchemy.url"))
    async with engine.connect() as conn:
        await conn.run_sync(run_with)
        await conn.commit()
    await engine.dispose()


connection = config.attributes.get("connection")
if connection is not None:
    run_with(connection)
else:
    asyncio.run(run_async())
