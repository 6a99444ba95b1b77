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
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from sfumato.db.models import Account, LedgerEntry, Task
from sfumato.errors import Conflict, FieldError, IdempotencyConflict, InsufficientCredits, NotFound

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
    idempotency_key: str | None = None,
) -> int:
    stmt = _DEBIT if amount < 0 else _CREDIT
    values = {"account": account_id, "amount": amount, "needed": -amount}
    balance = (await session.execute(stmt, values)).scalar_one_or_none()
    if balance is None:
        exists = await session.scalar(select(Account.id).where(Account.id == account_id))
        if exists is None:
            raise NotFound(f"No account {account_id}.")
        raise InsufficientCredits(f"This task costs {-amount} credits; the balance is lower.")
    entry = {"account_id": account_id, "task_id": task_id, "kind": kind, "amount": amount,
             "balance_after": balance, "note": note, "created_at": now}
    if idempotency_key is not None:
        entry["idempotency_key"] = idempotency_key
    await session.execute(_ENTRY, [entry])
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


async def _grant_by_key(session: AsyncSession, account_id: str, idempotency_key: str) -> LedgerEntry | None:
    return await session.scalar(select(LedgerEntry).where(
        LedgerEntry.account_id == account_id, LedgerEntry.idempotency_key == idempotency_key))


def _same_grant(earlier: LedgerEntry, credits: int) -> LedgerEntry:
    if earlier.amount != credits:
        raise IdempotencyConflict(
            f"This idempotency_key was used for a grant of {earlier.amount} credits (entry {earlier.id}).",
            [FieldError("idempotency_key", "Already used with a different amount.")])
    return earlier


async def grant_once(
    session: AsyncSession, account_id: str, credits: int, now: datetime, *, idempotency_key: str,
    note: str | None = None,
) -> tuple[LedgerEntry, bool]:
    """An operator's grant (negative: a manual debit, down to zero at most, else ``Conflict``), made once per
    ``idempotency_key``: ``(entry, True)`` the first time, ``(the first entry, False)`` after.

    ``UNIQUE (account_id, idempotency_key)`` decides a race: on PostgreSQL the second of two
    concurrent grants waits on the account's row, then fails on the constraint and rolls back
    its savepoint (its balance change with it) and returns the winner's entry; SQLite's writers
    are serialised, so the second finds the first."""
    if credits == 0:
        raise ValueError("a grant moves a non-zero number of credits")
    earlier = await _grant_by_key(session, account_id, idempotency_key)
    if earlier is not None:
        return _same_grant(earlier, credits), False
    try:
        async with session.begin_nested():
            await _apply(session, account_id, credits, "grant", now, note=note, idempotency_key=idempotency_key)
    except IntegrityError:
        earlier = await _grant_by_key(session, account_id, idempotency_key)
        if earlier is None:
            raise
        return _same_grant(earlier, credits), False
    except InsufficientCredits:
        balance = await session.scalar(select(Account.balance).where(Account.id == account_id))
        raise Conflict(f"A debit of {-credits} credits would take the balance ({balance}) below zero; "
                       "a debit goes down to zero at most.") from None
    entry = await _grant_by_key(session, account_id, idempotency_key)
    assert entry is not None
    return entry, True


async def refund(session: AsyncSession, task_id: str, now: datetime, note: str | None = None) -> LedgerEntry:
    """Give a succeeded task's charge back, once (``UNIQUE (task_id, kind)``): a ``refund`` entry.
    ``Conflict`` for a task that is not succeeded, charged nothing, or was refunded already."""
    task = await session.get(Task, task_id)
    if task is None:
        raise NotFound(f"No task {task_id[:80]}.")
    if task.status != "succeeded":
        raise Conflict(f"Only a succeeded task's charge can be refunded; this task is {task.status} "
                       "(a failed or canceled task was refunded when it ended).")
    if task.final_credits <= 0:
        raise Conflict("The task was charged nothing; there is nothing to refund.")
    refunded = select(LedgerEntry).where(LedgerEntry.task_id == task_id, LedgerEntry.kind == "refund")
    if await session.scalar(refunded) is None:
        try:
            async with session.begin_nested():
                await _apply(session, task.account_id, task.final_credits, "refund", now, task_id=task_id, note=note)
        except IntegrityError:
            pass  # a concurrent refund won: reported below like any second refund
        else:
            entry = await session.scalar(refunded)
            assert entry is not None
            return entry
    raise Conflict(f"The task's charge of {task.final_credits} credits was refunded already.")
