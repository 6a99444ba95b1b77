"""The key check's SQL, for the driver (``db/driver.py``): run on every request whose key this
process has not seen within ``SFUMATO_AUTH_CACHE_SECONDS``. One statement: the key, its limits
and whether its account is disabled (a join on the primary key, no second round trip)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sfumato.accounts import keys
from sfumato.db.driver import Driver, sqlite_sql

KEY_PG = """
SELECT k.id, k.account_id, k.models, k.rate_limit, k.credit_limit, k.credit_period, k.expires_at
FROM api_keys k JOIN accounts a ON a.id = k.account_id
WHERE k.secret_hash = $1 AND k.revoked_at IS NULL AND a.disabled_at IS NULL
"""
KEY_SQLITE = sqlite_sql(KEY_PG)


@dataclass(frozen=True, slots=True)
class KeyPolicy:
    """What a live key may do: the account it acts for and the key's own limits."""

    key_id: str
    account_id: str
    models: frozenset[str] | None = None
    """Model ids the key may create tasks on; ``None``: every model."""
    rate_limit: str | None = None
    """Its create limit (``limits`` notation) instead of the server's default."""
    credit_limit: int | None = None
    credit_period: str | None = None
    """``day`` or ``month``: the key's tasks may take at most ``credit_limit`` per period."""
    expires_at: datetime | None = None

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    @property
    def budgeted(self) -> bool:
        return self.credit_limit is not None and self.credit_period is not None


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)


def policy_of(row: dict[str, Any]) -> KeyPolicy:
    models = row["models"]
    if isinstance(models, str | bytes):
        models = json.loads(models)
    return KeyPolicy(
        key_id=str(row["id"]), account_id=str(row["account_id"]),
        models=None if models is None else frozenset(models), rate_limit=row["rate_limit"],
        credit_limit=None if row["credit_limit"] is None else int(row["credit_limit"]),
        credit_period=row["credit_period"], expires_at=_time(row["expires_at"]),
    )


async def key_policy(driver: Driver, secret: str) -> KeyPolicy | None:
    """The policy of a live key (not revoked, its account not disabled), or ``None``; expiry
    is the caller's to check against its clock. Malformed keys never reach the database."""
    if not keys.well_formed(secret):
        return None
    row = await driver.fetchrow(KEY_SQLITE if driver.is_sqlite else KEY_PG, keys.hash_key(secret))
    return None if row is None else policy_of(row)


async def authenticate(driver: Driver, secret: str) -> str | None:
    """The account id for a live key, or ``None`` (expired keys included: no clock here)."""
    policy = await key_policy(driver, secret)
    return None if policy is None else policy.account_id
