"""Claims and leases. A claimed task carries a fresh lease token; every later write about it
(heartbeat, finish, hand-back) is conditional on that token, so a worker that lost its lease
(paused, partitioned, presumed dead) can never finish a task someone else now owns.
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, text, update
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
    created_at: datetime | None = None
    deadline_at: datetime | None = None
    """``Cancel-After``: the run stops there and the task ends canceled, refunded."""


# The claim takes the lowest turns (``tasks.queue_key``, given at create by ``tasks/queue.py``:
# start-time fair queueing by account) that are not past their deadline, and moves the queue's
# virtual time up to the highest turn it started. With an account concurrency cap it ranks a
# head of the queue (twice the batch plus 32, so a few capped accounts cannot fill it) by each
# account's place there plus what the account runs now, and skips turns past the cap.
# $1 limit, $2 token, $3 lease expiry, $4 now; with a cap, $5 the cap and $6 the head's size.
_WAITING = "status = 'queued' AND (deadline_at IS NULL OR deadline_at > $4)"
_PICK = """
WITH picked AS (
    SELECT id FROM tasks WHERE """ + _WAITING + """
    ORDER BY queue_key, created_at, id LIMIT $1 {lock}
)"""  # noqa: S608 - composed of this module's constants only
_PICK_CAPPED = """
WITH running AS (
    SELECT account_id, count(*) AS n FROM tasks WHERE status = 'running' GROUP BY account_id
), head AS (
    SELECT id, account_id, queue_key, created_at,
           row_number() OVER (PARTITION BY account_id ORDER BY queue_key, created_at, id) AS place
    FROM (SELECT id, account_id, queue_key, created_at FROM tasks WHERE """ + _WAITING + """
          ORDER BY queue_key, created_at, id LIMIT $6) AS first
), allowed AS (
    SELECT head.id, head.queue_key, head.created_at FROM head LEFT JOIN running ON running.account_id = head.account_id
    WHERE head.place + coalesce(running.n, 0) <= $5
), picked AS (
    SELECT tasks.id FROM tasks JOIN allowed ON allowed.id = tasks.id WHERE tasks.status = 'queued'
    ORDER BY allowed.queue_key, allowed.created_at, allowed.id LIMIT $1 {lock}
)"""  # noqa: S608 - composed of this module's constants only
_TAKE = """
UPDATE tasks SET status = 'running', lease_token = $2, lease_expires_at = $3, attempts = attempts + 1,
    started_at = $4, updated_at = $4
WHERE id IN (SELECT id FROM picked) AND status = 'queued'
RETURNING id, account_id, model, prompt, params, reference_file_ids, reserved_credits, attempts, request_id,
          upstream_state, created_at, deadline_at, queue_key
"""
_PG_TAIL = """, clock AS (
    UPDATE queue_clock SET virtual_time = top.turn FROM (SELECT max(queue_key) AS turn FROM claimed) AS top
    WHERE queue_clock.id = 1 AND top.turn > queue_clock.virtual_time
)
SELECT claimed.*, pg_notify('sfumato_task_changed', claimed.id) FROM claimed
"""
_PG_LOCK = "FOR UPDATE OF tasks SKIP LOCKED"
CLAIM_PG = _PICK.replace("{lock}", _PG_LOCK) + ", claimed AS (" + _TAKE + ")" + _PG_TAIL
CLAIM_CAPPED_PG = _PICK_CAPPED.replace("{lock}", _PG_LOCK) + ", claimed AS (" + _TAKE + ")" + _PG_TAIL
CLAIM_SQLITE = sqlite_sql(_PICK.replace("{lock}", "") + _TAKE)
CLAIM_CAPPED_SQLITE = sqlite_sql(_PICK_CAPPED.replace("{lock}", "") + _TAKE)
"""SQLite has no data-modifying CTEs (the ``UPDATE`` follows the ``WITH``; the clock moves in a
second statement of the same transaction) and no row locks to skip: its writers take turns."""
ADVANCE_CLOCK_SQLITE = "UPDATE queue_clock SET virtual_time = max(virtual_time, ?) WHERE id = 1"


def _decoded(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)


def _claim_of(row: Mapping[str, Any], token: str) -> Claim:
    return Claim(task_id=row["id"], account_id=row["account_id"], model=row["model"], prompt=row["prompt"],
                 params=_decoded(row["params"]), reference_file_ids=_decoded(row["reference_file_ids"]) or [],
                 reserved_credits=int(row["reserved_credits"]), attempts=int(row["attempts"]),
                 request_id=row["request_id"], upstream_state=_decoded(row["upstream_state"]), lease_token=token,
                 created_at=_time(row["created_at"]), deadline_at=_time(row["deadline_at"]))


def _statement(limit: int, token: str, now: datetime, lease: timedelta, cap: int | None,
               *, sqlite: bool) -> tuple[str, tuple[Any, ...]]:
    args: tuple[Any, ...] = (limit, token, now + lease, now)
    if cap is None:
        return (CLAIM_SQLITE if sqlite else CLAIM_PG), args
    return (CLAIM_CAPPED_SQLITE if sqlite else CLAIM_CAPPED_PG), (*args, cap, 2 * limit + 32)


def _advance_sqlite(execute: Any, rows: list[Any]) -> None:
    if rows:
        execute(ADVANCE_CLOCK_SQLITE, (max(int(row["queue_key"]) for row in rows),))


async def claim(session: AsyncSession, limit: int, now: datetime, lease: timedelta, *,
                cap: int | None = None) -> list[Claim]:
    """Take up to ``limit`` queued tasks, lowest turn first, in the caller's transaction: the
    statement :func:`claim_through` sends, through the ORM's connection."""
    token = secrets.token_hex(16)
    sqlite = session.get_bind().dialect.name == "sqlite"
    sql, args = _statement(limit, token, now, lease, cap, sqlite=sqlite)
    values = {f"p{i}": (sqlite_value(a) if sqlite else a) for i, a in enumerate(args, start=1)}
    rows = [dict(row) for row in (await session.execute(text(re.sub(r"[?$](\d+)", r":p\1", sql)), values)).mappings()]
    if sqlite and rows:
        await session.execute(text("UPDATE queue_clock SET virtual_time = max(virtual_time, :turn) WHERE id = 1"),
                              {"turn": max(int(row["queue_key"]) for row in rows)})
    for row in rows:
        mark_changed(session, row["id"])
    return [_claim_of(row, token) for row in rows]


async def claim_through(driver: Driver, limit: int, now: datetime, lease: timedelta, *,
                        cap: int | None = None) -> list[Claim]:
    """Take up to ``limit`` queued tasks, lowest turn first (the worker's hot path): one
    statement; PostgreSQL skips rows another worker is claiming, SQLite's writers take turns."""
    token = secrets.token_hex(16)
    if isinstance(driver, SqliteDriver):
        sql, args = _statement(limit, token, now, lease, cap, sqlite=True)

        def claim_rows(conn: sqlite3.Connection) -> list[Row]:
            rows = [dict(r) for r in conn.execute(sql, tuple(sqlite_value(a) for a in args)).fetchall()]
            _advance_sqlite(conn.execute, rows)
            return rows

        rows = await driver.write(claim_rows)
    else:
        sql, args = _statement(limit, token, now, lease, cap, sqlite=False)
        rows = list(await driver.fetch(sql, *args))
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
