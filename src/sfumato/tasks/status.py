"""The task state machine, written down once and applied as guarded UPDATEs.

    queued ──► running ──► succeeded
      │          │ ├─────► failed
      │          │ └─────► canceled
      │          └──► queued      (lease expired: the task is recovered for another attempt)
      └──► canceled
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, update
from sqlalchemy.ext.asyncio import AsyncSession

from sfumato.db.database import mark_changed
from sfumato.db.models import Task


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELED})

TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.QUEUED: frozenset({Status.RUNNING, Status.CANCELED}),
    Status.RUNNING: frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELED, Status.QUEUED}),
    Status.SUCCEEDED: frozenset(),
    Status.FAILED: frozenset(),
    Status.CANCELED: frozenset(),
}


class IllegalTransition(Exception):
    pass


async def transition(
    session: AsyncSession,
    task_id: str,
    *,
    source: Iterable[Status],
    target: Status,
    now: datetime,
    lease_token: str | None = None,
    values: dict[str, Any] | None = None,
    when: ColumnElement[bool] | None = None,
) -> tuple[str, int] | None:
    """Move ``task_id`` from one of ``source`` to ``target`` if it is still there (and the row
    meets ``when``, if given).

    Returns ``(account_id, reserved_credits)`` for the winner, ``None`` if another actor moved
    the task first (or the lease token no longer matches). The loser must write nothing else.
    """
    sources = tuple(source)
    for state in sources:
        if target not in TRANSITIONS[state]:
            raise IllegalTransition(f"{state} -> {target}")
    stmt = update(Task).where(Task.id == task_id, Task.status.in_([s.value for s in sources]))
    if lease_token is not None:
        stmt = stmt.where(Task.lease_token == lease_token)
    if when is not None:
        stmt = stmt.where(when)
    stmt = stmt.values(status=target.value, updated_at=now, **(values or {}))
    row = (await session.execute(stmt.returning(Task.account_id, Task.reserved_credits))).one_or_none()
    if row is None:
        return None
    mark_changed(session, task_id)
    return row[0], row[1]
