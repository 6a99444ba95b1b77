"""Task use cases: create (reserve + idempotency in one transaction), get, list, cancel.

Functions take the caller's session and never commit. ``create_task`` is one local transaction:
the task row, its reservation and its idempotency key become visible together or not at all.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from sfumato import ids, logs, pagination
from sfumato.accounts.queries import KeyPolicy
from sfumato.billing import budget as budgets
from sfumato.billing import ledger
from sfumato.catalog.validate import TaskRequest
from sfumato.db.driver import Driver
from sfumato.db.models import IdempotencyKey, Task
from sfumato.errors import FieldError, Forbidden, IdempotencyConflict, NotFound, TaskNotCancelable
from sfumato.files import references
from sfumato.files.urls import MediaSigner
from sfumato.tasks import lifecycle, queries, queue
from sfumato.tasks.status import Status
from sfumato.webhooks import service as webhooks
from sfumato.worker.lease import Claim

MAX_PAGE = pagination.MAX_PAGE


@dataclass(frozen=True, slots=True)
class Created:
    task: Task | queries.TaskRow
    created: bool
    """False when an earlier task was returned for the same ``client_request_id``."""


def request_hash(request: TaskRequest) -> str:
    """Canonical JSON of what the request asks for: key order and whitespace do not matter."""
    asked: dict[str, Any] = {"model": request.model.id, "prompt": request.prompt, "params": request.stored_params()}
    if request.webhook_url is not None:
        asked["webhook_url"] = request.webhook_url
    if request.priority != "normal":
        asked["priority"] = request.priority
    canonical = json.dumps(asked, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def _replay(
    session: AsyncSession, account_id: str, key: str, digest: str, now: datetime, window: timedelta
) -> Task | None:
    """The task an earlier request with this key made, ``None`` if the key is free (or expired)."""
    record = await session.get(IdempotencyKey, (account_id, key), populate_existing=True)
    if record is None:
        return None
    if record.created_at <= now - window:
        # A guarded DELETE, not ``session.delete``: a concurrent request may be forgetting (and
        # re-taking) the same key, and the ORM warns when its delete then matches no row. The
        # loser's insert of the key fails and it replays the winner's new task.
        session.expunge(record)
        await session.execute(delete(IdempotencyKey).where(
            IdempotencyKey.account_id == account_id, IdempotencyKey.key == key,
            IdempotencyKey.created_at <= now - window,
        ))
        return None
    if record.request_hash != digest:
        raise IdempotencyConflict(
            details=[FieldError("client_request_id", "Already used with a different request body.")]
        )
    return await session.get(Task, record.task_id)


def key_policy(account_id: str, key: KeyPolicy | None) -> KeyPolicy | None:
    """The creating key's limits, if it is this account's key (every door passes the key it
    authenticated; the CLI and internal callers create under no key's limits)."""
    return key if key is not None and key.account_id == account_id else None


def allowed(policy: KeyPolicy | None, request: TaskRequest, now: datetime) -> budgets.Budget | None:
    """Refuse a model outside the key's list (403); the key's budget for this create, if any."""
    if policy is None:
        return None
    if policy.models is not None and request.model.id not in policy.models:
        raise Forbidden(f"This API key may not use the model {request.model.id}.", details=[FieldError(
            "model", f"This key may use: {', '.join(sorted(policy.models)) or 'no model'}.")])
    return budgets.budget_of(policy.key_id, policy.credit_limit, policy.credit_period, now)


async def create_task(
    session: AsyncSession,
    account_id: str,
    request: TaskRequest,
    now: datetime,
    *,
    idempotency_window: timedelta,
    signer: MediaSigner | None = None,
    ageing: int = queue.DEFAULT_AGEING,
    api_key: KeyPolicy | None = None,
) -> Created:
    """``ageing``: how many turns a low-priority task is placed behind (``tasks/queue.py``);
    ``api_key``: the creating key's limits (models, budget), ``None`` for none."""
    budget = allowed(key_policy(account_id, api_key), request, now)
    key = request.client_request_id
    digest = request_hash(request)
    if key is not None:
        earlier = await _replay(session, account_id, key, digest, now, idempotency_window)
        if earlier is not None:
            return Created(earlier, created=False)
    files = await references.resolve(session, account_id, request.references, now, signer, request.model.references)
    task = Task(
        id=ids.task_id(), account_id=account_id, model=request.model.id, prompt=request.prompt,
        params=request.stored_params(), reference_file_ids=[f.id for f in files],
        status=Status.QUEUED.value, reserved_credits=request.price, final_credits=0,
        attempts=0, cancel_requested=False, created_at=now, updated_at=now,
        request_id=logs.request_id.get() or None, webhook_url=request.webhook_url,
        priority=request.priority, deadline_at=deadline(request, now),
        budget_key_id=None if budget is None else budget.key_id,
    )
    if request.webhook_url is not None:
        await webhooks.ensure_secret(session, account_id)
    try:
        async with session.begin_nested():
            if budget is not None:  # the key's lock before the account's (billing/budget.py)
                await budgets.check_session(session, budget, request.price)
            task.queue_key = await queue.take_turn(session, account_id, request.priority, ageing)
            session.add(task)
            await session.flush()
            if key is not None:
                session.add(IdempotencyKey(
                    account_id=account_id, key=key, request_hash=digest, task_id=task.id, created_at=now
                ))
                await session.flush()
            await ledger.reserve(session, account_id, task.id, request.price, now)
    except IntegrityError:
        # A concurrent request with the same key committed first: answer as its replay.
        if key is None:
            raise
        earlier = await _replay(session, account_id, key, digest, now, idempotency_window)
        if earlier is None:
            raise
        return Created(earlier, created=False)
    return Created(task, created=True)


def is_plain(request: TaskRequest) -> bool:
    """A create the driver's one-statement path takes (``queries.create_task``): no key to
    replay by, no references to resolve, no webhook secret to make first."""
    return request.client_request_id is None and not request.references and request.webhook_url is None


def deadline(request: TaskRequest, now: datetime) -> datetime | None:
    """When the task is canceled if not done (``Cancel-After``, counted from its creation)."""
    return None if request.cancel_after is None else now + request.cancel_after


def _new_task(account_id: str, request: TaskRequest, now: datetime,
              lease: tuple[str, datetime] | None = None, ageing: int = queue.DEFAULT_AGEING,
              api_key: KeyPolicy | None = None) -> queries.NewTask:
    budget = allowed(key_policy(account_id, api_key), request, now)
    return queries.NewTask(
        id=ids.task_id(), account_id=account_id, model=request.model.id, prompt=request.prompt,
        params=request.stored_params(), price=request.price, request_id=logs.request_id.get() or None, now=now,
        lease=lease, priority=request.priority, deadline_at=deadline(request, now), ageing=ageing, budget=budget)


async def create_plain(driver: Driver, account_id: str, request: TaskRequest, now: datetime,
                       ageing: int = queue.DEFAULT_AGEING, *, api_key: KeyPolicy | None = None) -> queries.TaskRow:
    """``create_task`` for a plain request (:func:`is_plain`), through the driver."""
    return await queries.create_task(driver, _new_task(account_id, request, now, ageing=ageing, api_key=api_key))


async def create_running(driver: Driver, account_id: str, request: TaskRequest, now: datetime,
                         lease: tuple[str, datetime], *, api_key: KeyPolicy | None = None) -> Claim:
    """:func:`create_plain`, the task written already claimed under ``lease`` for a worker of
    this process to run at once (``Worker.run_now``): the same reservation and ledger entry."""
    new = _new_task(account_id, request, now, lease, api_key=api_key)
    await queries.create_task(driver, new)
    return Claim(task_id=new.id, account_id=account_id, model=new.model, prompt=new.prompt, params=new.params,
                 reference_file_ids=[], reserved_credits=new.price, attempts=1, request_id=new.request_id,
                 upstream_state=None, lease_token=lease[0], created_at=now, deadline_at=new.deadline_at)


async def get_task(session: AsyncSession, account_id: str, task_id: str) -> Task:
    task = await session.scalar(select(Task).where(Task.id == task_id, Task.account_id == account_id))
    if task is None:
        raise NotFound(f"No task {task_id[:80]}.")
    return task


async def list_tasks(
    session: AsyncSession,
    account_id: str,
    *,
    limit: int = 20,
    cursor: str | None = None,
    status: Status | None = None,
    model: str | None = None,
) -> tuple[list[Task], str | None]:
    """Newest first. Returns a page and the cursor of the next one (``None`` at the end)."""
    return await task_page(session, account_id=account_id, limit=limit, cursor=cursor, status=status, model=model)


async def task_page(
    session: AsyncSession, *, account_id: str | None, limit: int = 20, cursor: str | None = None,
    status: Status | None = None, model: str | None = None,
) -> tuple[list[Task], str | None]:
    """:func:`list_tasks` of one account, or (``account_id=None``, the operator's) of all."""
    stmt = select(Task) if account_id is None else select(Task).where(Task.account_id == account_id)
    if status is not None:
        stmt = stmt.where(Task.status == status.value)
    if model is not None:
        stmt = stmt.where(Task.model == model)
    stmt, limit = pagination.page_query(stmt, Task.created_at, Task.id, cursor, limit)
    rows = list(await session.scalars(stmt))
    page = rows[:limit]
    return page, (pagination.encode(page[-1].created_at, page[-1].id) if len(rows) > limit else None)


async def cancel_task(
    session: AsyncSession, account_id: str, task_id: str, now: datetime, *, running_cancelable: bool
) -> Task:
    """Cancel a queued task at once (refunded); ask the worker to stop a running one.

    Canceling a canceled task is a no-op. A finished task, or a running one whose provider
    cannot stop, is ``TaskNotCancelable``.
    """
    task = await get_task(session, account_id, task_id)
    for _ in range(3):  # the task may move between our reads and writes: decide again
        if task.status == Status.QUEUED and await lifecycle.cancel(
            session, task_id, now=now, source=(Status.QUEUED,)
        ):
            return await _reload(session, task)
        await session.refresh(task)
        if task.status == Status.RUNNING:
            if not running_cancelable:
                raise TaskNotCancelable("The task is running on a provider that cannot stop it.")
            asked = await session.execute(
                update(Task).where(Task.id == task_id, Task.status == Status.RUNNING.value)
                .values(cancel_requested=True, updated_at=now).returning(Task.id)
            )
            if asked.first() is not None:
                return await _reload(session, task)
            await session.refresh(task)  # requeued by recovery, or ended, in between
            continue
        if task.status == Status.CANCELED:
            return task
        if task.status != Status.QUEUED:
            break
    raise TaskNotCancelable(f"The task has already {task.status}.")


async def _reload(session: AsyncSession, task: Task) -> Task:
    await session.refresh(task)
    return task


async def purge_idempotency_keys(session: AsyncSession, now: datetime, window: timedelta, batch: int = 1000) -> int:
    """Forget keys older than the window, at most ``batch`` per call."""
    old = select(IdempotencyKey.account_id, IdempotencyKey.key).where(
        IdempotencyKey.created_at <= now - window
    ).limit(batch)
    rows = (await session.execute(old)).all()
    for account_id, key in rows:
        await session.execute(
            delete(IdempotencyKey).where(IdempotencyKey.account_id == account_id, IdempotencyKey.key == key)
        )
    return len(rows)
