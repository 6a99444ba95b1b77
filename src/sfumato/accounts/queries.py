"""The key check's SQL, for the driver (``db/driver.py``): run on every request whose key this
process has not seen within ``SFUMATO_AUTH_CACHE_SECONDS``."""

from __future__ import annotations

from sfumato.accounts import keys
from sfumato.db.driver import Driver, sqlite_sql

ACCOUNT_OF_KEY_PG = "SELECT account_id FROM api_keys WHERE secret_hash = $1 AND revoked_at IS NULL"
ACCOUNT_OF_KEY_SQLITE = sqlite_sql(ACCOUNT_OF_KEY_PG)


async def authenticate(driver: Driver, secret: str) -> str | None:
    """The account id for a live key, or ``None``. Malformed keys never reach the database."""
    if not keys.well_formed(secret):
        return None
    row = await driver.fetchrow(ACCOUNT_OF_KEY_SQLITE if driver.is_sqlite else ACCOUNT_OF_KEY_PG,
                                keys.hash_key(secret))
    return None if row is None else str(row["account_id"])
