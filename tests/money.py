"""Reading the ledger back for assertions."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import func, select

from sfumato.accounts import service as accounts
from sfumato.db.models import LedgerEntry, Task
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
