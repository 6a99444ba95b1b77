"""Accounts, keys and balances. Functions take the caller's session; the caller commits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sfumato import ids
from sfumato.accounts import keys
from sfumato.billing import ledger
from sfumato.db.models import Account, ApiKey, LedgerEntry
from sfumato.errors import NotFound


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key: ApiKey
    secret: str
    """Shown once, never stored."""


async def create_account(session: AsyncSession, name: str, credits: int, now: datetime) -> Account:
    account = Account(id=ids.account_id(), name=name, balance=0, created_at=now)
    session.add(account)
    await session.flush()
    if credits > 0:
        await ledger.grant(session, account.id, credits, now, note="initial credits")
        await session.refresh(account)
    return account


async def get_account(session: AsyncSession, account_id: str) -> Account:
    account = await session.get(Account, account_id)
    if account is None:
        raise NotFound(f"No account {account_id}.")
    return account


async def list_accounts(session: AsyncSession) -> list[Account]:
    return list(await session.scalars(select(Account).order_by(Account.created_at)))


async def issue_key(session: AsyncSession, account_id: str, now: datetime, name: str | None = None) -> IssuedKey:
    await get_account(session, account_id)
    secret = keys.generate()
    key = ApiKey(
        id=ids.key_id(), account_id=account_id, secret_hash=keys.hash_key(secret),
        prefix=keys.display_prefix(secret), last4=secret[-4:], name=name, created_at=now,
    )
    session.add(key)
    await session.flush()
    return IssuedKey(key, secret)


async def list_keys(session: AsyncSession, account_id: str) -> list[ApiKey]:
    stmt = select(ApiKey).where(ApiKey.account_id == account_id).order_by(ApiKey.created_at)
    return list(await session.scalars(stmt))


async def revoke_key(session: AsyncSession, key_id: str, now: datetime) -> ApiKey:
    """Revoke by key id (``key_…``). Revoking twice keeps the first revocation time."""
    key = await session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"No API key {key_id}.")
    await session.execute(
        update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)).values(revoked_at=now)
    )
    await session.refresh(key)
    return key


async def ledger_entries(session: AsyncSession, account_id: str, limit: int = 50) -> list[LedgerEntry]:
    stmt = (
        select(LedgerEntry).where(LedgerEntry.account_id == account_id)
        .order_by(LedgerEntry.id.desc()).limit(limit)
    )
    return list(await session.scalars(stmt))


async def ledger_sum(session: AsyncSession, account_id: str) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(LedgerEntry.account_id == account_id)
    )
    return int(total or 0)


async def find_account(session: AsyncSession, id_or_name: str) -> Account:
    """An account by id, or by name when the name is unique (CLI convenience)."""
    found = list(await session.scalars(
        select(Account).where(or_(Account.id == id_or_name, Account.name == id_or_name)).limit(2)
    ))
    if len(found) != 1:
        raise NotFound(f"No single account with id or name {id_or_name!r}.")
    return found[0]
