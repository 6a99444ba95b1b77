"""Runs the Alembic migrations shipped inside the package, from sync or async code."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

from sfumato.db.database import Database

SCRIPT_LOCATION = "sfumato.db:migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _upgrade(connection: Connection, cfg: Config) -> None:
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")


async def upgrade(db: Database) -> None:
    """Bring the schema to the newest revision (idempotent)."""
    cfg = alembic_config(db.url)
    async with db.engine.connect() as conn:
        if not db.is_sqlite:
            # Several processes may start at once: one migrates, the others wait for it.
            await conn.exec_driver_sql("SELECT pg_advisory_lock(726354)")
        try:
            await conn.run_sync(_upgrade, cfg)
            await conn.commit()
        finally:
            if not db.is_sqlite:
                await conn.exec_driver_sql("SELECT pg_advisory_unlock(726354)")
                await conn.commit()
