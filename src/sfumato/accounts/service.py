"""Accounts, keys and balances. Functions take the caller's session; the caller commits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from sfumato import ids, pagination
from sfumato.accounts import keys
from sfumato.billing import ledger
from sfumato.db.models import Account, ApiKey, LedgerEntry, Task
from sfumato.errors import Conflict, NotFound
from sfumato.tasks import lifecycle
from sfumato.tasks.status import Status

ACCOUNT_DISABLED = {"code": "account_disabled",
                    "message": "The account was disabled before the task started; its credits were refunded."}


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key: ApiKey
    secret: str
    """Shown once, never stored."""


async def _name_taken(session: AsyncSession, name: str, account_id: str | None = None) -> None:
    other = await session.scalar(select(Account.id).where(Account.name == name, Account.id != (account_id or "")))
    if other is not None:
        raise Conflict(f"An account named {name!r} exists already: {other}.")


async def create_account(session: AsyncSession, name: str, credits: int, now: datetime) -> Account:
    """A new account; ``Conflict`` if the name is taken (``UNIQUE (name)`` settles a race)."""
    await _name_taken(session, name)
    account = Account(id=ids.account_id(), name=name, balance=0, created_at=now)
    try:
        async with session.begin_nested():
            session.add(account)
            await session.flush()
    except IntegrityError:
        await _name_taken(session, name)
        raise
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


async def page_accounts(
    session: AsyncSession, *, q: str | None = None, cursor: str | None = None, limit: int = 20
) -> tuple[list[Account], str | None]:
    """Newest first; ``q``: a piece of the name (any case) or the start of the id."""
    stmt = select(Account)
    if q:
        stmt = stmt.where(or_(func.lower(Account.name).contains(q.lower(), autoescape=True),
                              Account.id.startswith(q, autoescape=True)))
    stmt, limit = pagination.page_query(stmt, Account.created_at, Account.id, cursor, limit)
    rows = list(await session.scalars(stmt))
    page = rows[:limit]
    return page, (pagination.encode(page[-1].created_at, page[-1].id) if len(rows) > limit else None)


async def update_account(
    session: AsyncSession, account_id: str, now: datetime, *, name: str | None = None, disabled: bool | None = None,
) -> tuple[Account, list[str]]:
    """Rename and/or disable (or enable again). Disabling cancels the account's queued tasks,
    refunded through ``tasks.lifecycle`` (a running one finishes); returns their ids. The
    caller drops the account's keys from its key cache."""
    account = await get_account(session, account_id)
    if name is not None and name != account.name:
        await _name_taken(session, name, account_id)
        await session.execute(update(Account).where(Account.id == account_id).values(name=name))
    canceled: list[str] = []
    if disabled is True:
        await session.execute(update(Account).where(Account.id == account_id, Account.disabled_at.is_(None))
                              .values(disabled_at=now))
        queued = await session.scalars(select(Task.id).where(Task.account_id == account_id,
                                                             Task.status == Status.QUEUED.value))
        for task_id in list(queued):
            if await lifecycle.cancel(session, task_id, now=now, source=(Status.QUEUED,), error=ACCOUNT_DISABLED):
                canceled.append(task_id)
    elif disabled is False:
        await session.execute(update(Account).where(Account.id == account_id).values(disabled_at=None))
    await session.refresh(account)
    return account, canceled


async def issue_key(
    session: AsyncSession, account_id: str, now: datetime, name: str | None = None, *,
    models: list[str] | None = None, rate_limit: str | None = None, credit_limit: tuple[int, str] | None = None,
    expires_at: datetime | None = None,
) -> IssuedKey:
    """A new key; ``models``, ``rate_limit`` (``limits`` notation), ``credit_limit``
    (``(credits, "day"|"month")``) and ``expires_at`` limit it (checked by the caller)."""
    await get_account(session, account_id)
    secret = keys.generate()
    key = ApiKey(
        id=ids.key_id(), account_id=account_id, secret_hash=keys.hash_key(secret),
        prefix=keys.display_prefix(secret), last4=secret[-4:], name=name, created_at=now,
        models=models, rate_limit=rate_limit, expires_at=expires_at,
        credit_limit=None if credit_limit is None else credit_limit[0],
        credit_period=None if credit_limit is None else credit_limit[1],
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
    """An account by id or by name (CLI convenience). Names are unique, but another account's
    id could equal a name: then the matching ids are named, to pick one."""
    found = list(await session.scalars(
        select(Account).where(or_(Account.id == id_or_name, Account.name == id_or_name))
        .order_by(Account.created_at).limit(5)
    ))
    if not found:
        raise NotFound(f"No single account with id or name {id_or_name!r}: none matches.")
    if len(found) > 1:
        raise NotFound(f"No single account with id or name {id_or_name!r}: it matches "
                       f"{', '.join(a.id for a in found)}; give the id.")
    return found[0]
