"""The task hot paths' SQL, for the driver (``db/driver.py``), PostgreSQL and SQLite side by side.

- **get**: one ``SELECT`` by id and account, outside any transaction.
- **create** (no ``client_request_id``, no references, no webhook URL: the common create; the
  others keep the ORM path in ``service.create_task``): the reservation debit, the task row and
  its ``reserve`` ledger entry, atomically. On PostgreSQL that is **one** statement (a CTE
  whose parts see one snapshot and commit together) with the worker's ``NOTIFY`` in it, so the
  account row is locked for one statement, not a conversation; on SQLite one ``BEGIN
  IMMEDIATE`` transaction (on the loop; on the writer thread when the file is busy). Both debit with
  ``WHERE balance >= price``, the same guard as ``billing.ledger``: no oversell. A task a worker
  of this process will run at once (``Worker.run_now``) is written already claimed instead of
  ``queued``: ``running``, attempt 1, its lease token and expiry, ``started_at``.

Values cross the driver as the ORM writes them: on SQLite, datetimes as naive UTC text
``YYYY-MM-DD HH:MM:SS.ffffff`` and JSON as text; on PostgreSQL, aware datetimes and JSONB
text. ``tests/test_task_queries.py`` reads what one side writes with the other.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sfumato import ids
from sfumato.billing import budget as budgets
from sfumato.db.driver import Driver, PgDriver, Row, SqliteDriver, Steps, sqlite_sql, sqlite_value
from sfumato.db.models import Task
from sfumato.errors import InsufficientCredits, NotFound
from sfumato.tasks import queue
from sfumato.tasks.status import Status

GET_PG = """
SELECT id, account_id, model, status, reserved_credits, final_credits, created_at, updated_at, result, error,
       priority, started_at, deadline_at
FROM tasks WHERE id = $1 AND account_id = $2
"""
GET_SQLITE = sqlite_sql(GET_PG)

_PG_TURN = queue.take_turn_sql(priority="$14", ageing="$16", sqlite=False)
CREATE_PG = """
WITH debit AS (
    UPDATE accounts SET balance = balance - $3, """ + _PG_TURN[0] + """
    FROM """ + queue.CLOCK + """ AS clock
    WHERE id = $2 AND balance >= $3 RETURNING balance, """ + _PG_TURN[1] + """
), task AS (
    INSERT INTO tasks (id, account_id, model, prompt, params, reference_file_ids, request_id, status,
                       reserved_credits, final_credits, attempts, cancel_requested, created_at, updated_at,
                       lease_token, lease_expires_at, started_at, priority, deadline_at, queue_key)
    SELECT $1, $2, $4, $5, $6::jsonb, '[]'::jsonb, $7, $9, $3, 0, $10, false, $8, $8, $11, $12, $13, $14, $15, turn
    FROM debit
), entry AS (
    INSERT INTO ledger_entries (account_id, task_id, kind, amount, balance_after, created_at)
    SELECT $2, $1, 'reserve', -$3, balance, $8 FROM debit
)
SELECT balance, pg_notify('sfumato_task_queued', '') FROM debit
"""  # noqa: S608 - composed of this module's constants only
CREATE_RUNNING_PG = CREATE_PG.replace("pg_notify('sfumato_task_queued', '')", "pg_notify('sfumato_task_changed', $1)")
"""A task created already running (``NewTask.lease``) is no work for other workers: no wake-up."""
_SQLITE_TURN = queue.take_turn_sql(priority="$3", ageing="$4", sqlite=True)
DEBIT_SQLITE = sqlite_sql("""
UPDATE accounts SET balance = balance - $2, """ + _SQLITE_TURN[0] + """
FROM """ + queue.CLOCK + """ AS clock
WHERE id = $1 AND balance >= $2 RETURNING balance, """ + _SQLITE_TURN[1])
INSERT_TASK_SQLITE = sqlite_sql("""
INSERT INTO tasks (id, account_id, model, prompt, params, reference_file_ids, request_id, status,
                   reserved_credits, final_credits, attempts, cancel_requested, created_at, updated_at,
                   lease_token, lease_expires_at, started_at, priority, deadline_at, queue_key)
VALUES ($1, $2, $4, $5, $6, '[]', $7, $9, $3, 0, $10, 0, $8, $8, $11, $12, $13, $14, $15, $16)
""")
RESERVE_SQLITE = sqlite_sql("""
INSERT INTO ledger_entries (account_id, task_id, kind, amount, balance_after, created_at)
VALUES ($1, $2, 'reserve', $3, $4, $5)
""")
ACCOUNT_EXISTS = "SELECT 1 FROM accounts WHERE id = $1"
ACCOUNT_EXISTS_SQLITE = sqlite_sql(ACCOUNT_EXISTS)


@dataclass(slots=True)
class TaskRow:
    """What the task object shows, read straight from the row (``TaskView`` takes it like a
    ``Task``)."""

    id: str
    account_id: str
    model: str
    status: str
    reserved_credits: int
    final_credits: int
    created_at: datetime
    updated_at: datetime
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    priority: str = "normal"
    started_at: datetime | None = None
    deadline_at: datetime | None = None


AnyTask = Task | TaskRow
"""A task as the ORM loaded it or as the driver read it: ``TaskView`` shows either."""


def _time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)


def _maybe_time(value: Any) -> datetime | None:
    return None if value is None else _time(value)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def task_row(row: Row) -> TaskRow:
    return TaskRow(
        id=row["id"], account_id=row["account_id"], model=row["model"], status=row["status"],
        reserved_credits=int(row["reserved_credits"]), final_credits=int(row["final_credits"]),
        created_at=_time(row["created_at"]), updated_at=_time(row["updated_at"]),
        result=_json(row["result"]), error=_json(row["error"]), priority=row["priority"],
        started_at=_maybe_time(row["started_at"]), deadline_at=_maybe_time(row["deadline_at"]),
    )


async def get_task(driver: Driver, account_id: str, task_id: str) -> TaskRow:
    """The task as its owner sees it; ``NotFound`` for another account's, like a missing one."""
    row = await driver.fetchrow(GET_SQLITE if driver.is_sqlite else GET_PG, task_id, account_id)
    if row is None:
        raise NotFound(f"No task {task_id[:80]}.")
    return task_row(row)


@dataclass(frozen=True, slots=True)
class NewTask:
    id: str
    account_id: str
    model: str
    prompt: str
    params: dict[str, Any]
    price: int
    request_id: str | None
    now: datetime
    lease: tuple[str, datetime] | None = None
    """``(token, expires_at)``: created already claimed (``running``, attempt 1) under this lease,
    for a worker of this process that runs it at once (``Worker.run_now``); else ``queued``."""
    priority: str = "normal"
    deadline_at: datetime | None = None
    ageing: int = queue.DEFAULT_AGEING
    """How many turns a low-priority task is placed behind (``tasks/queue.py``)."""
    budget: budgets.Budget | None = None
    """The creating key's credit limit, checked in the same transaction (``billing/budget.py``)."""

    @property
    def status(self) -> Status:
        return Status.QUEUED if self.lease is None else Status.RUNNING

    def row(self) -> TaskRow:
        return TaskRow(self.id, self.account_id, self.model, self.status.value, self.price, 0, self.now, self.now,
                       None, None, self.priority, None if self.lease is None else self.now, self.deadline_at)

    def state(self) -> tuple[Any, ...]:
        """``status, attempts, lease_token, lease_expires_at, started_at, priority, deadline_at``
        as the row holds them."""
        if self.lease is None:
            return Status.QUEUED.value, 0, None, None, None, self.priority, self.deadline_at
        return Status.RUNNING.value, 1, self.lease[0], self.lease[1], self.now, self.priority, self.deadline_at


def _create_sqlite(conn: sqlite3.Connection, new: NewTask) -> int | None:
    now = sqlite_value(new.now)
    if new.budget is not None:
        budgets.check_sqlite(conn, new.budget, new.price)
    found = conn.execute(DEBIT_SQLITE, (new.account_id, new.price, new.priority, new.ageing)).fetchone()
    if found is None:
        return None
    balance, turn = int(found[0]), int(found[1])
    conn.execute(INSERT_TASK_SQLITE, (new.id, new.account_id, new.price, new.model, new.prompt,
                                      json.dumps(new.params), new.request_id, now,
                                      *(sqlite_value(v) for v in new.state()), turn))
    conn.execute(RESERVE_SQLITE, (new.account_id, new.id, -new.price, balance, now))
    if new.budget is not None:
        conn.execute(budgets.MARK_SQLITE, (new.id, new.budget.key_id))
    return balance


def _create_args(new: NewTask) -> tuple[Any, ...]:
    return (new.id, new.account_id, new.price, new.model, new.prompt, json.dumps(new.params), new.request_id,
            new.now, *new.state(), new.ageing)


async def _create_pg_budgeted(driver: PgDriver, new: NewTask) -> int | None:
    """A key with a credit limit: its row lock, the sum of its spend, the usual one-statement
    create, and the task marked as the key's, in one transaction (four round trips, for such
    keys only)."""
    assert new.budget is not None
    async with driver.transaction() as conn:
        await budgets.check_pg(conn, new.budget, new.price)
        found = await conn.fetchrow(CREATE_PG if new.lease is None else CREATE_RUNNING_PG, *_create_args(new))
        if found is None:
            return None
        await conn.execute(budgets.MARK_PG, new.id, new.budget.key_id)
        return int(found["balance"])


async def create_task(driver: Driver, new: NewTask) -> TaskRow:
    """Reserve the price and queue the task (or start it, under ``new.lease``), atomically; ``InsufficientCredits`` (or
    ``NotFound`` for an account that does not exist) and nothing written if it cannot."""
    if isinstance(driver, SqliteDriver):
        balance = await driver.write(lambda conn: _create_sqlite(conn, new))
    elif new.budget is not None:
        balance = await _create_pg_budgeted(driver, new)
    else:
        found = await driver.fetchrow(CREATE_PG if new.lease is None else CREATE_RUNNING_PG, *_create_args(new))
        balance = None if found is None else int(found["balance"])
    if balance is None:
        if await driver.fetchrow(ACCOUNT_EXISTS_SQLITE if driver.is_sqlite else ACCOUNT_EXISTS,
                                 new.account_id) is None:
            raise NotFound(f"No account {new.account_id}.")
        raise InsufficientCredits(f"This task costs {new.price} credits; the balance is lower.")
    return new.row()


# Finishing a task the worker ran (``lifecycle.succeed`` on the ORM, statement for statement):
# the output files' rows, the guarded transition (status and lease token), the settle (and the
# release of anything not charged) and the webhook's outbox row commit together or not at all.
FILE_COLUMNS = ("id", "account_id", "task_id", "purpose", "kind", "name", "mime_type", "bytes", "width", "height",
                "storage_key", "created_at", "expires_at", "deleted_at", "duration_ms", "purged_at")
INSERT_FILE = """
INSERT INTO files (id, account_id, task_id, purpose, kind, name, mime_type, bytes, width, height, storage_key,
                   created_at, expires_at, deleted_at, duration_ms, purged_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
"""
SUCCEED = """
UPDATE tasks SET status = 'succeeded', updated_at = $3, result = $4, finished_at = $3,
    final_credits = CASE WHEN reserved_credits < $5 THEN reserved_credits ELSE $6 END,
    lease_token = NULL, lease_expires_at = NULL
WHERE id = $1 AND status = 'running' AND lease_token = $2
RETURNING account_id, reserved_credits, webhook_url
"""
TOUCH_BALANCE = "UPDATE accounts SET balance = balance + $2 WHERE id = $1 RETURNING balance, webhook_url"
LEDGER_ENTRY = """
INSERT INTO ledger_entries (account_id, task_id, kind, amount, balance_after, note, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
"""
ENQUEUE_WEBHOOK = """
INSERT INTO webhook_deliveries (id, account_id, task_id, event_type, url, status, attempts, next_attempt_at, log,
                                created_at)
VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, '[]', $6)
"""
NOTIFY_CHANGED = "SELECT pg_notify('sfumato_task_changed', $1)"


class LeaseLost(Exception):
    """The transition found the task no longer this lease's: nothing was written."""


def succeed_steps(task_id: str, lease_token: str, result: dict[str, Any], charged: int,
                  files: list[dict[str, Any]], now: datetime, *, notify: bool) -> Steps[None]:
    """The finishing transaction of a task that succeeded (see :mod:`sfumato.db.driver`'s
    ``Steps``); raises :class:`LeaseLost`, rolling back, if another actor ended it first."""
    for stored in files:
        yield INSERT_FILE, tuple(stored[c] for c in FILE_COLUMNS)
    won = yield SUCCEED, (task_id, lease_token, now, result, charged, max(0, charged))
    if won is None:
        raise LeaseLost(task_id)
    account_id, reserved = won["account_id"], int(won["reserved_credits"])
    charged = max(0, min(charged, reserved))
    account = yield TOUCH_BALANCE, (account_id, 0)
    assert account is not None  # the task's account row exists (foreign key)
    yield LEDGER_ENTRY, (account_id, task_id, "settle", 0, account["balance"], f"charged {charged}", now)
    if reserved > charged:
        returned = yield TOUCH_BALANCE, (account_id, reserved - charged)
        assert returned is not None
        yield LEDGER_ENTRY, (account_id, task_id, "release", reserved - charged, returned["balance"], None, now)
    url = won["webhook_url"] or account["webhook_url"]
    if url:
        yield ENQUEUE_WEBHOOK, (ids.new_id("msg"), account_id, task_id, f"task.{Status.SUCCEEDED.value}", url, now)
    if notify:
        yield NOTIFY_CHANGED, (task_id,)


SUCCEED_PG = """
WITH done AS (
    UPDATE tasks SET status = 'succeeded', updated_at = $3, result = $4::jsonb, finished_at = $3,
        final_credits = LEAST(reserved_credits, GREATEST(0, $5::bigint)), lease_token = NULL, lease_expires_at = NULL
    WHERE id = $1 AND status = 'running' AND lease_token = $2
    RETURNING account_id, reserved_credits, final_credits, webhook_url
), stored AS (
    INSERT INTO files SELECT * FROM jsonb_populate_recordset(NULL::files, $6::jsonb) WHERE EXISTS (SELECT 1 FROM done)
), moved AS (
    UPDATE accounts SET balance = balance + (done.reserved_credits - done.final_credits) FROM done
    WHERE accounts.id = done.account_id
    RETURNING accounts.balance, accounts.webhook_url AS account_hook, done.*
), entries AS (
    INSERT INTO ledger_entries (account_id, task_id, kind, amount, balance_after, note, created_at)
    SELECT account_id, $1, 'settle', 0, balance - (reserved_credits - final_credits), 'charged ' || final_credits, $3
    FROM moved
    UNION ALL
    SELECT account_id, $1, 'release', reserved_credits - final_credits, balance, NULL, $3
    FROM moved WHERE reserved_credits > final_credits
), hook AS (
    INSERT INTO webhook_deliveries (id, account_id, task_id, event_type, url, status, attempts, next_attempt_at,
                                    log, created_at)
    SELECT $7, account_id, $1, 'task.succeeded', coalesce(webhook_url, account_hook), 'pending', 0, $3, '[]', $3
    FROM moved WHERE coalesce(webhook_url, account_hook) IS NOT NULL
)
SELECT pg_notify('sfumato_task_changed', $1) FROM moved
"""
"""PostgreSQL's finishing write as **one** statement: its parts see one snapshot and commit
together, the account row is held for one statement. The same outcome, row for row, as
:func:`succeed_steps` (which SQLite runs in one hop): the guarded transition, the files (only
if the transition won), one ``UPDATE`` of the balance by the unused part, the ``settle`` entry
(with the balance before the release, as the two-step form records it) and the ``release``."""


async def succeed(driver: Driver, task_id: str, *, lease_token: str, result: dict[str, Any], charged: int,
                  files: list[dict[str, Any]], now: datetime) -> None:
    if isinstance(driver, SqliteDriver):
        await driver.run(succeed_steps(task_id, lease_token, result, charged, files, now, notify=False))
        return
    rows = [{k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in f.items()} for f in files]
    if await driver.fetchrow(SUCCEED_PG, task_id, lease_token, now, json.dumps(result), charged, json.dumps(rows),
                             ids.new_id("msg")) is None:
        raise LeaseLost(task_id)
