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

from sqlalchemy import BigInteger, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sfumato.db.models import Account, LedgerEntry
from sfumato.errors import InsufficientCredits, NotFound

# Built once: every task moves the ledger two or three times, and building these statement
# objects per call cost more CPU than executing them (bench/slow_tasks.py, docs/benchmarks.md).
_CREDIT = (update(Account).where(Account.id == bindparam("account"))
           .values(balance=Account.balance + bindparam("amount", type_=BigInteger)).returning(Account.balance))
_DEBIT = _CREDIT.where(Account.balance >= bindparam("needed", type_=BigInteger))
_ENTRY = insert(LedgerEntry)


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
    stmt = _DEBIT if amount < 0 else _CREDIT
    values = {"account": account_id, "amount": amount, "needed": -amount}
    balance = (await session.execute(stmt, values)).scalar_one_or_none()
    if balance is None:
        exists = await session.scalar(select(Account.id).where(Account.id == account_id))
        if exists is None:
            raise NotFound(f"No account {account_id}.")
        raise InsufficientCredits(f"This task costs {-amount} credits; the balance is lower.")
    await session.execute(_ENTRY, [{
        "account_id": account_id, "task_id": task_id, "kind": kind, "amount": amount,
        "balance_after": balance, "note": note, "created_at": now,
    }])
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
