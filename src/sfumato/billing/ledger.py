"""The ledger: every credit movement is one append-only entry, applied with its balance change.

Invariant: an account's ``balance`` equals the sum of its entries' ``amount`` and is never
negative. Debits are conditional updates (``WHERE balance >= amount``) checked by their result,
so concurrent reservations cannot oversell; the CHECK constraint is the last line of defence.
``UNIQUE (task_id, kind)`` makes each task's reserve, settle and release happen at most once.

A ``settle`` entry moves no credits (the reservation already took them): it records that the
hold became a charge. If less than the reservation is charged, a ``release`` returns the rest.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sfumato.db.models import Account, LedgerEntry
from sfumato.errors import InsufficientCredits, NotFound


async def _apply(
    session: AsyncSession,
    account_id: str,
    amount: int,
    kind: str,
    now: datetime,
    *,
    task_id: str | None = None,
    note: str | None = None,
) -> int:
    stmt = update(Account).where(Account.id == account_id)
    if amount < 0:
        stmt = stmt.where(Account.balance >= -amount)
    stmt = stmt.values(balance=Account.balance + amount).returning(Account.balance)
    balance = (await session.execute(stmt)).scalar_one_or_none()
    if balance is None:
        exists = await session.scalar(select(Account.id).where(Account.id == account_id))
        if exists is None:
            raise NotFound(f"No account {account_id}.")
        raise InsufficientCredits(f"This task costs {-amount} credits; the balance is lower.")
    await session.execute(
        insert(LedgerEntry).values(
            account_id=account_id, task_id=task_id, kind=kind, amount=amount,
            balance_after=balance, note=note, created_at=now,
        )
    )
    return balance


async def grant(session: AsyncSession, account_id: str, credits: int, now: datetime, note: str | None = None) -> int:
    """Add credits (a top-up). Returns the new balance."""
    if credits <= 0:
        raise ValueError("a grant adds a positive number of credits")
    return await _apply(session, account_id, credits, "grant", now, note=note)


async def reserve(session: AsyncSession, account_id: str, task_id: str, credits: int, now: datetime) -> int:
    """Hold a task's price; raises ``InsufficientCredits`` and changes nothing if it cannot."""
    return await _apply(session, account_id, -credits, "reserve", now, task_id=task_id)


async def settle(
    session: AsyncSession, account_id: str, task_id: str, reserved: int, charged: int, now: datetime
) -> int:
    """Turn the hold into a charge of ``charged`` (capped at the reservation); release the rest."""
    charged = max(0, min(charged, reserved))
    balance = await _apply(session, account_id, 0, "settle", now, task_id=task_id, note=f"charged {charged}")
    if reserved > charged:
        balance = await _apply(session, account_id, reserved - charged, "release", now, task_id=task_id)
    return balance


async def release(session: AsyncSession, account_id: str, task_id: str, reserved: int, now: datetime) -> int:
    """Give a failed or canceled task's reservation back in full."""
    return await _apply(session, account_id, reserved, "release", now, task_id=task_id)
