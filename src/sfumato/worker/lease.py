"""Claims and leases. A claimed task carries a fresh lease token; every later write about it
(heartbeat, finish, hand-back) is conditional on that token, so a worker that lost its lease
(paused, partitioned, presumed dead) can never finish a task someone else now owns.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sfumato.db.database import mark_changed
from sfumato.db.driver import Driver, Row, SqliteDriver, sqlite_sql, sqlite_value
from sfumato.db.models import Task
from sfumato.tasks.status import Status


@dataclass(frozen=True, slots=True)
class Claim:
    task_id: str
    account_id: str
    model: str
    prompt: str
    params: dict[str, Any]
    reference_file_ids: list[str]
    reserved_credits: int
    attempts: int
    request_id: str | None
    upstream_state: dict[str, Any] | None
    lease_token: str


_CLAIMED = ("account_id", "model", "prompt", "params", "reference_file_ids", "reserved_credits", "attempts",
            "request_id", "upstream_state")


async def claim(session: AsyncSession, limit: int, now: datetime, lease: timedelta) -> list[Claim]:
    """Take up to ``limit`` queued tasks, oldest first. PostgreSQL skips rows another worker
    is claiming (``FOR UPDATE SKIP LOCKED``); SQLite serialises writers with ``BEGIN IMMEDIATE``."""
    token = secrets.token_hex(16)
    oldest = (
        select(Task.id).where(Task.status == Status.QUEUED.value)
        .order_by(Task.created_at).limit(limit).with_for_update(skip_locked=True)
    )
    stmt = (
        update(Task).where(Task.id.in_(oldest.scalar_subquery()), Task.status == Status.QUEUED.value)
        .values(status=Status.RUNNING.value, lease_token=token, lease_expires_at=now + lease,
                attempts=Task.attempts + 1, started_at=now, updated_at=now)
        .returning(Task.id, *(getattr(Task, name) for name in _CLAIMED))
    )
    rows = (await session.execute(stmt)).mappings().all()
    for row in rows:
        mark_changed(session, row["id"])
    return [Claim(task_id=row["id"], **{name: row[name] for name in _CLAIMED}, lease_token=token) for row in rows]


CLAIM_PG = """
WITH claimed AS (
    UPDATE tasks SET status = 'running', lease_token = $2, lease_expires_at = $3, attempts = attempts + 1,
        started_at = $4, updated_at = $4
    WHERE id IN (SELECT id FROM tasks WHERE status = 'queued' ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED)
      AND status = 'queued'
    RETURNING id, account_id, model, prompt, params, reference_file_ids, reserved_credits, attempts, request_id,
              upstream_state
)
SELECT claimed.*, pg_notify('sfumato_task_changed', claimed.id) FROM claimed
"""
CLAIM_SQLITE = sqlite_sql("""
UPDATE tasks SET status = 'running', lease_token = $2, lease_expires_at = $3, attempts = attempts + 1,
    started_at = $4, updated_at = $4
WHERE id IN (SELECT id FROM tasks WHERE status = 'queued' ORDER BY created_at LIMIT $1) AND status = 'queued'
RETURNING id, account_id, model, prompt, params, reference_file_ids, reserved_credits, attempts, request_id,
          upstream_state
""")


def _claim_of(row: Row, token: str) -> Claim:
    def decoded(value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    return Claim(task_id=row["id"], account_id=row["account_id"], model=row["model"], prompt=row["prompt"],
                 params=decoded(row["params"]), reference_file_ids=decoded(row["reference_file_ids"]) or [],
                 reserved_credits=int(row["reserved_credits"]), attempts=int(row["attempts"]),
                 request_id=row["request_id"], upstream_state=decoded(row["upstream_state"]), lease_token=token)


async def claim_through(driver: Driver, limit: int, now: datetime, lease: timedelta) -> list[Claim]:
    """:func:`claim` through the driver (the worker's hot path): one statement, the same SQL
    shape (PostgreSQL skips rows another worker is claiming; SQLite's writers take turns)."""
    token = secrets.token_hex(16)
    args = (limit, token, now + lease, now)
    if isinstance(driver, SqliteDriver):
        def claim_rows(conn: sqlite3.Connection) -> list[Row]:
            return [dict(r) for r in conn.execute(CLAIM_SQLITE, tuple(sqlite_value(a) for a in args)).fetchall()]

        rows = await driver.write(claim_rows)
    else:
        rows = list(await driver.fetch(CLAIM_PG, *args))
    return [_claim_of(row, token) for row in rows]


async def renew(session: AsyncSession, task_id: str, token: str, now: datetime, lease: timedelta) -> bool | None:
    """Extend the lease. Returns whether a cancel was requested, or ``None`` if the lease is lost."""
    stmt = (
        update(Task).where(Task.id == task_id, Task.lease_token == token, Task.status == Status.RUNNING.value)
        .values(lease_expires_at=now + lease).returning(Task.cancel_requested)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def expired(session: AsyncSession, now: datetime, limit: int = 100) -> list[tuple[str, str, int, str, int]]:
    """Running tasks whose lease ran out: ``(task_id, lease_token, attempts, model, reserved_credits)``."""
    stmt = (
        select(Task.id, Task.lease_token, Task.attempts, Task.model, Task.reserved_credits)
        .where(Task.status == Status.RUNNING.value, Task.lease_expires_at < now).limit(limit)
    )
    return [(row[0], row[1] or "", row[2], row[3], row[4]) for row in (await session.execute(stmt)).all()]
