"""Queue order: start-time fair queueing by account.

Every task is given a **turn** (``tasks.queue_key``) when it is created, and workers claim the
lowest turns first (``worker/lease.py``). An account's next normal task takes the turn after
its previous one, but never one below the queue's virtual time (``queue_clock``: the highest
turn a claim has started). So accounts with queued work take turns: one that queues 500 tasks
gets turns ``v, v+1, …, v+499``, and another account's task created meanwhile gets turn ``v``
again, ahead of the 499 (a turn ties with the older task first). An account that was idle has
no backlog of turns to spend, because its next turn starts at the virtual time.

A ``priority: "low"`` task is placed ``ageing`` turns further on (its own line, so a batch of
low tasks spreads out too, and the account's normal tasks are not pushed back by it): it waits
while the account's normal tasks of the next ``ageing`` turns are queued, and reaches the front
once that many turns have passed, so it never starves.

The turn is taken in the same ``UPDATE accounts`` that debits the reservation (one row, already
locked by the debit): no extra round trip on the create's hot path.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

DEFAULT_AGEING = 100
"""Turns a low-priority task is placed behind (``SFUMATO_LOW_PRIORITY_AGEING``)."""

CLOCK = "(SELECT coalesce(max(virtual_time), 0) AS v FROM queue_clock)"

# $p: the priority, $a: the ageing offset; the statement's own parameter numbers are filled in.
TAKE_TURN_SET = """
    queue_key = CASE WHEN {p} = 'low' THEN queue_key ELSE {greatest}(queue_key + 1, clock.v) END,
    low_queue_key = CASE WHEN {p} = 'low' THEN {greatest}(low_queue_key + 1, clock.v + {a}) ELSE low_queue_key END
"""
TAKE_TURN_RETURNING = "CASE WHEN {p} = 'low' THEN low_queue_key ELSE queue_key END AS turn"


def take_turn_sql(*, priority: str, ageing: str, sqlite: bool) -> tuple[str, str]:
    """``(SET clause, RETURNING column)`` for an ``UPDATE accounts … FROM CLOCK AS clock``."""
    greatest = "max" if sqlite else "greatest"
    return (TAKE_TURN_SET.format(p=priority, a=ageing, greatest=greatest),
            TAKE_TURN_RETURNING.format(p=priority))


async def take_turn(session: AsyncSession, account_id: str, priority: str, ageing: int = DEFAULT_AGEING) -> int:
    """The next turn of ``account_id`` for a task of ``priority`` (the ORM's create path; the
    driver's takes it inside its debit). In the caller's transaction."""
    sqlite = session.get_bind().dialect.name == "sqlite"
    setting, turn = take_turn_sql(priority=":priority", ageing=":ageing", sqlite=sqlite)
    found = await session.execute(
        text(f"UPDATE accounts SET {setting} FROM {CLOCK} AS clock WHERE id = :account RETURNING {turn}"),  # noqa: S608
        {"priority": priority, "ageing": ageing, "account": account_id})
    return int(found.scalar_one())
