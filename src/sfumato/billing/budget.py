"""A key's credit limit: at most N credits per UTC day or month taken by the key's tasks.

What a key has *spent* in a period is what the ledger says its tasks created in that period
took: their ``reserve`` entries minus what ``release`` and ``refund`` entries gave back. So a
failed task costs its key nothing, an operator's refund returns budget as well as credits, and
nothing is kept apart from the ledger that could drift from it.

The check runs in the reservation's transaction, after taking the key's row lock on PostgreSQL
(``SELECT … FOR UPDATE``; SQLite's ``BEGIN IMMEDIATE`` already serialises writers): creates
with one key queue behind each other for those few statements, and each sees the tasks of
those before it, so racing creates cannot overspend. The lock comes before the account's row
(the debit) on every path, so two creates never wait on each other in opposite orders.

Only tasks of keys with a limit carry ``tasks.budget_key_id`` (a partial index): an unlimited
key's create does none of this.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sfumato.db.driver import sqlite_sql, sqlite_value
from sfumato.db.models import ApiKey, LedgerEntry, Task
from sfumato.errors import FieldError, KeyBudgetExceeded, ValidationFailed

PERIODS = ("day", "month")
PATTERN = r"^[1-9][0-9]{0,14}/(day|month)$"
"""``credit_limit``'s notation, ``N/day`` or ``N/month`` (also the OpenAPI document's pattern)."""

LOCK_KEY_PG = "SELECT id FROM api_keys WHERE id = $1 FOR UPDATE"
SPENT_PG = """
SELECT coalesce(-sum(e.amount), 0) AS spent
FROM tasks t JOIN ledger_entries e ON e.task_id = t.id
WHERE t.budget_key_id = $1 AND t.created_at >= $2 AND e.kind IN ('reserve', 'release', 'refund')
"""
SPENT_SQLITE = sqlite_sql(SPENT_PG)
MARK_PG = "UPDATE tasks SET budget_key_id = $2 WHERE id = $1"
MARK_SQLITE = sqlite_sql(MARK_PG)


def parse_limit(raw: str, field: str = "credit_limit") -> tuple[int, str]:
    """``"500/day"`` or ``"20000/month"`` → ``(500, "day")``."""
    if re.fullmatch(PATTERN, raw) is None:
        raise ValidationFailed(details=[FieldError(field, "Expected N/day or N/month with N >= 1, e.g. 500/day.")])
    credits, period = raw.split("/")
    return int(credits), period


def show_limit(limit: int | None, period: str | None) -> str | None:
    return None if limit is None or period is None else f"{limit}/{period}"


def period_start(now: datetime, period: str) -> datetime:
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day if period == "day" else day.replace(day=1)


@dataclass(frozen=True, slots=True)
class Budget:
    """One create's budget check: the key, its limit, and the start of the current period."""

    key_id: str
    limit: int
    period: str
    since: datetime

    def check(self, spent: int, price: int) -> None:
        if spent + price > self.limit:
            raise KeyBudgetExceeded(
                f"This API key may spend {self.limit} credits per {self.period}: {spent} are spent "
                f"since {self.since.date().isoformat()}, and this task costs {price}.")


def budget_of(key_id: str, limit: int | None, period: str | None, now: datetime) -> Budget | None:
    if limit is None or period is None:
        return None
    return Budget(key_id, limit, period, period_start(now, period))


async def check_session(session: AsyncSession, budget: Budget, price: int) -> None:
    """On the ORM's create path: lock the key, sum its spend, refuse what would pass the limit."""
    await session.execute(select(ApiKey.id).where(ApiKey.id == budget.key_id).with_for_update())
    spent = await session.scalar(
        select(func.coalesce(-func.sum(LedgerEntry.amount), 0)).select_from(Task)
        .join(LedgerEntry, LedgerEntry.task_id == Task.id)
        .where(Task.budget_key_id == budget.key_id, Task.created_at >= budget.since,
               LedgerEntry.kind.in_(("reserve", "release", "refund"))))
    budget.check(int(spent or 0), price)


def check_sqlite(conn: sqlite3.Connection, budget: Budget, price: int) -> None:
    """On the driver's path, inside its ``BEGIN IMMEDIATE`` transaction."""
    row = conn.execute(SPENT_SQLITE, (budget.key_id, sqlite_value(budget.since))).fetchone()
    budget.check(int(row[0] or 0), price)


async def check_pg(conn: Any, budget: Budget, price: int) -> None:
    """On the driver's path, inside an asyncpg transaction: the lock, then (a new statement, so
    a new snapshot that sees every create committed before the lock was granted) the sum."""
    await conn.fetchrow(LOCK_KEY_PG, budget.key_id)
    spent = await conn.fetchval(SPENT_PG, budget.key_id, budget.since)
    budget.check(int(spent or 0), price)
