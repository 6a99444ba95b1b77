"""Ending a task: one guarded transition plus exactly one ledger movement, in one transaction,
with the task's webhook (if it has one) queued in the same transaction.

Whoever wins the transition (worker, canceller, reaper) writes the ledger entry; a loser sees
``False`` and writes nothing, so a task is settled or refunded exactly once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import case, select
from sqlalchemy.ext.asyncio import AsyncSession

from sfumato.billing import ledger
from sfumato.db.models import Task
from sfumato.tasks.status import Status, transition
from sfumato.webhooks import outbox

_ENDED = {"lease_token": None, "lease_expires_at": None}
DEADLINE_EXCEEDED = {"code": "deadline_exceeded",
                     "message": "The task was not done by its Cancel-After deadline; its credits were refunded."}


async def succeed(
    session: AsyncSession,
    task_id: str,
    *,
    lease_token: str,
    result: dict[str, Any],
    charged: int,
    now: datetime,
) -> bool:
    """``charged`` is capped at the reservation and at zero, in the row exactly as in the ledger
    (``ledger.settle``): a provider reporting a higher cost must not break the finishing write."""
    final = case((Task.reserved_credits < charged, Task.reserved_credits), else_=max(0, charged))
    won = await transition(
        session, task_id, source=[Status.RUNNING], target=Status.SUCCEEDED, now=now,
        lease_token=lease_token,
        values={"result": result, "final_credits": final, "finished_at": now, **_ENDED},
    )
    if won is None:
        return False
    account_id, reserved = won
    await ledger.settle(session, account_id, task_id, reserved, charged, now)
    await outbox.enqueue(session, task_id, Status.SUCCEEDED, now)
    return True


async def fail(
    session: AsyncSession,
    task_id: str,
    *,
    code: str,
    message: str,
    now: datetime,
    lease_token: str | None = None,
    source: tuple[Status, ...] = (Status.RUNNING,),
) -> bool:
    won = await transition(
        session, task_id, source=source, target=Status.FAILED, now=now, lease_token=lease_token,
        values={"error": {"code": code, "message": message}, "final_credits": 0, "finished_at": now, **_ENDED},
    )
    if won is None:
        return False
    account_id, reserved = won
    await ledger.release(session, account_id, task_id, reserved, now)
    await outbox.enqueue(session, task_id, Status.FAILED, now)
    return True


async def cancel(
    session: AsyncSession,
    task_id: str,
    *,
    now: datetime,
    source: tuple[Status, ...],
    lease_token: str | None = None,
    error: dict[str, str] | None = None,
) -> bool:
    """``error``: why, when it was not the client's cancel (``DEADLINE_EXCEEDED``)."""
    won = await transition(
        session, task_id, source=source, target=Status.CANCELED, now=now, lease_token=lease_token,
        values={
            "error": error or {"code": "canceled", "message": "The task was canceled."},
            "final_credits": 0, "finished_at": now, **_ENDED,
        },
    )
    if won is None:
        return False
    account_id, reserved = won
    await ledger.release(session, account_id, task_id, reserved, now)
    await outbox.enqueue(session, task_id, Status.CANCELED, now)
    return True


async def expire_queued(session: AsyncSession, now: datetime, limit: int = 100) -> list[tuple[str, str, int]]:
    """End queued tasks whose deadline has passed: ``canceled`` with ``deadline_exceeded``,
    refunded. Each is a guarded transition, so when several processes notice the same task,
    one ends it and the others write nothing. Returns ``(task_id, model, reserved)`` of those
    this call ended."""
    due = (await session.execute(
        select(Task.id, Task.model, Task.reserved_credits)
        .where(Task.status == Status.QUEUED.value, Task.deadline_at <= now).limit(limit)
    )).all()
    ended = []
    for task_id, model, reserved in due:
        if await cancel(session, task_id, now=now, source=(Status.QUEUED,), error=DEADLINE_EXCEEDED):
            ended.append((task_id, model, reserved))
    return ended


async def requeue(session: AsyncSession, task_id: str, *, lease_token: str, now: datetime) -> Status | None:
    """Hand a running task back to the queue (its lease expired, or its worker is stopping).

    A task whose client asked to cancel it is canceled (refunded) instead: back in the queue it
    would run again and be charged for work the client no longer wants. Returns the task's new
    state (``QUEUED`` or ``CANCELED``), or ``None`` if another actor moved it first."""
    won = await transition(
        session, task_id, source=[Status.RUNNING], target=Status.QUEUED, now=now,
        lease_token=lease_token, values=dict(_ENDED), when=Task.cancel_requested.is_(False),
    )
    if won is not None:
        return Status.QUEUED
    if await cancel(session, task_id, now=now, source=(Status.RUNNING,), lease_token=lease_token):
        return Status.CANCELED
    return None


async def abandon(session: AsyncSession, task_id: str, *, lease_token: str, now: datetime,
                  message: str) -> Status | None:
    """End a task whose workers kept vanishing: ``failed`` with ``worker_lost``, or ``canceled``
    if its client asked for that meanwhile; refunded either way. ``None`` if it moved first."""
    won = await transition(
        session, task_id, source=[Status.RUNNING], target=Status.FAILED, now=now, lease_token=lease_token,
        values={"error": {"code": "worker_lost", "message": message}, "final_credits": 0, "finished_at": now,
                **_ENDED},
        when=Task.cancel_requested.is_(False),
    )
    if won is not None:
        await ledger.release(session, won[0], task_id, won[1], now)
        await outbox.enqueue(session, task_id, Status.FAILED, now)
        return Status.FAILED
    if await cancel(session, task_id, now=now, source=(Status.RUNNING,), lease_token=lease_token):
        return Status.CANCELED
    return None
