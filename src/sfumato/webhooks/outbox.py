"""Queueing a webhook in the transaction that ends its task: the task's end and its
notification commit together, so neither a crash nor a rollback can lose one without the other."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sfumato import ids
from sfumato.db.models import Account, Task, WebhookDelivery


async def enqueue(session: AsyncSession, task_id: str, status: str, now: datetime) -> None:
    """A delivery of ``task.<status>`` to the task's URL, else its account's; none without either."""
    row = (await session.execute(
        select(Task.account_id, func.coalesce(Task.webhook_url, Account.webhook_url))
        .join(Account, Account.id == Task.account_id).where(Task.id == task_id)
    )).one_or_none()
    if row is None or row[1] is None:
        return
    session.add(WebhookDelivery(
        id=ids.new_id("msg"), account_id=row[0], task_id=task_id, event_type=f"task.{status}", url=row[1],
        status="pending", attempts=0, next_attempt_at=now, log=[], created_at=now,
    ))
    await session.flush()
