"""The files hot path's SQL, for the driver (``db/driver.py``): the storage key of a file, read
by the OpenAI-compatible door for every image it answers with."""

from __future__ import annotations

from sfumato.db.driver import Driver, sqlite_sql
from sfumato.errors import NotFound

STORAGE_KEY_PG = "SELECT storage_key FROM files WHERE id = $1 AND deleted_at IS NULL"
STORAGE_KEY_SQLITE = sqlite_sql(STORAGE_KEY_PG)


async def storage_key(driver: Driver, file_id: str) -> str:
    row = await driver.fetchrow(STORAGE_KEY_SQLITE if driver.is_sqlite else STORAGE_KEY_PG, file_id)
    if row is None:
        raise NotFound(f"No file {file_id[:80]}.")
    return str(row["storage_key"])
