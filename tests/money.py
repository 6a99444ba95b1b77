"""Reading the ledger back for assertions."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from sqlalchemy import func, select

from sfumato.accounts import service as accounts
from sfumato.db.models import IdempotencyKey, LedgerEntry, Task
from sfumato.deps import Deps


async def books(deps: Deps, account_id: str) -> dict[str, object]:
    """Balance, ledger sum, entry kinds and task count of one account."""
    async with deps.db.read() as session:
        balance = (await accounts.get_account(session, account_id)).balance
        total = await accounts.ledger_sum(session, account_id)
        kinds = Counter(
            (await session.scalars(select(LedgerEntry.kind).where(LedgerEntry.account_id == account_id))).all()
        )
        tasks = await session.scalar(select(func.count()).select_from(Task).where(Task.account_id == account_id))
    assert balance == total, f"balance {balance} != ledger sum {total}"
    assert balance >= 0
    return {"balance": balance, "kinds": kinds, "tasks": tasks}


@dataclass(frozen=True)
class Audit:
    """One account's books, checked entry by entry (see ``audit``)."""

    balance: int
    granted: int
    held: int
    """Credits reserved by tasks that have not ended."""
    spent: int
    """Credits charged for succeeded tasks (their ``final_credits``)."""
    kinds: Counter[str]
    statuses: Counter[str]


def _check_task(task: Task, moves: dict[str, int]) -> None:
    """The ledger entries of one task match its state (ledger.py's module docstring)."""
    where = f"task {task.id} ({task.status}): {moves}"
    assert moves.get("reserve") == -task.reserved_credits, where
    assert 0 <= task.final_credits <= task.reserved_credits, where
    if task.status in ("queued", "running"):
        assert set(moves) == {"reserve"} and task.final_credits == 0, where
    elif task.status == "succeeded":
        assert moves.get("settle") == 0, where
        change = task.reserved_credits - task.final_credits
        assert moves.get("release", 0) == change and ("release" in moves) == (change > 0), where
    else:
        assert set(moves) == {"reserve", "release"} and moves["release"] == task.reserved_credits, where
        assert task.final_credits == 0, where


async def audit(deps: Deps, account_id: str) -> Audit:
    """Check every promise of the ledger for one account and return its totals. Call it when no
    write is in flight (the reads are separate statements).

    - each entry's ``balance_after`` is the running sum of the entries up to it, never negative,
      and the account's balance is the sum of all of them;
    - each task has exactly one ``reserve`` of its price; a task that has not ended has nothing
      else; a succeeded one a ``settle`` (moving nothing) plus a ``release`` of what it was not
      charged; a failed or canceled one a ``release`` of the whole reservation;
    - hence: granted == balance + held (unended tasks' reservations) + spent (final credits).
    """
    async with deps.db.read() as session:
        balance = (await accounts.get_account(session, account_id)).balance
        entries = list(await session.scalars(
            select(LedgerEntry).where(LedgerEntry.account_id == account_id).order_by(LedgerEntry.id)))
        tasks = {t.id: t for t in await session.scalars(select(Task).where(Task.account_id == account_id))}
    running = 0
    per_task: dict[str, dict[str, int]] = defaultdict(dict)
    for entry in entries:
        running += entry.amount
        assert entry.balance_after == running >= 0, f"entry {entry.id}: {entry.balance_after} != {running}"
        if entry.task_id is not None:
            assert entry.kind not in per_task[entry.task_id], f"two {entry.kind} entries for {entry.task_id}"
            per_task[entry.task_id][entry.kind] = entry.amount
    assert balance == running >= 0, f"balance {balance} != ledger sum {running}"
    assert set(per_task) == set(tasks), "every task has entries and every task entry has a task"
    for task in tasks.values():
        _check_task(task, per_task[task.id])
    granted = sum(e.amount for e in entries if e.kind == "grant")
    held = sum(t.reserved_credits for t in tasks.values() if t.status in ("queued", "running"))
    spent = sum(t.final_credits for t in tasks.values() if t.status == "succeeded")
    assert granted == balance + held + spent, (granted, balance, held, spent)
    return Audit(balance, granted, held, spent, Counter(e.kind for e in entries),
                 Counter(t.status for t in tasks.values()))


async def row_counts(deps: Deps) -> tuple[int, int, int]:
    """How many tasks, ledger entries and idempotency keys the whole database holds."""
    async with deps.db.read() as session:
        return (
            await session.scalar(select(func.count()).select_from(Task)) or 0,
            await session.scalar(select(func.count()).select_from(LedgerEntry)) or 0,
            await session.scalar(select(func.count()).select_from(IdempotencyKey)) or 0,
        )
