"""The driver's hot-path SQL (``tasks/queries.py``, ``files/queries.py``) on both databases:
what it writes the ORM reads back exactly (types, times, JSON), what the ORM writes it reads
back exactly, and the reservation keeps the ledger's promises (no oversell, one reserve each)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from sfumato.catalog import validate_task_request
from sfumato.db.models import LedgerEntry, Task
from sfumato.deps import Deps
from sfumato.errors import InsufficientCredits, NotFound
from sfumato.tasks import queries, service
from sfumato.tasks.queries import NewTask
from tests.conftest import new_customer
from tests.money import audit

NOW = datetime(2026, 12, 1, 12, 30, 15, 250000, tzinfo=UTC)


def _new(account_id: str, task_id: str, price: int = 4, **params: Any) -> NewTask:
    return NewTask(id=task_id, account_id=account_id, model="qwen-image", prompt="a fox \u0e01\u0e31 in snow",
                   params={"image_size": "square_hd", **params}, price=price, request_id="req_x", now=NOW)


async def test_a_created_task_reads_back_through_the_orm_exactly(make_deps: Callable[..., Any]) -> None:
    deps: Deps = await make_deps(run_worker=False)
    who = await new_customer(deps, credits=10)
    made = await queries.create_task(deps.db.driver, _new(who.account_id, "task_q1", seed="7"))
    async with deps.db.read() as session:
        task = await session.get(Task, "task_q1")
        entries = (await session.scalars(select(LedgerEntry).where(LedgerEntry.task_id == "task_q1"))).all()
    assert task is not None
    assert (task.status, task.reserved_credits, task.final_credits, task.attempts) == ("queued", 4, 0, 0)
    assert task.params == {"image_size": "square_hd", "seed": "7"} and task.reference_file_ids == []
    assert task.prompt == "a fox \u0e01\u0e31 in snow" and task.request_id == "req_x"
    assert task.created_at == task.updated_at == NOW and task.cancel_requested is False
    assert [(e.kind, e.amount, e.balance_after, e.created_at) for e in entries] == [("reserve", -4, 6, NOW)]
    assert made.status == "queued" and made.created_at == NOW
    assert (await audit(deps, who.account_id)).balance == 6


async def test_a_task_the_orm_wrote_reads_back_through_the_driver_exactly(make_deps: Callable[..., Any]) -> None:
    deps: Deps = await make_deps(run_worker=False)
    who = await new_customer(deps)
    request = validate_task_request({"model": "qwen-image", "prompt": "x", "client_request_id": "k1"},
                                    deps.catalog, max_prompt_chars=100)
    async with deps.db.write() as session:
        created = await service.create_task(session, who.account_id, request, NOW,
                                            idempotency_window=deps.idempotency_window)
        row = await session.get(Task, created.task.id)
        assert row is not None
        row.result = {"media": [{"file_id": "file_1", "width": 8}]}
        row.error = {"code": "x", "message": "\u0e01"}
    seen = await queries.get_task(deps.db.driver, who.account_id, created.task.id)
    assert (seen.id, seen.account_id, seen.model, seen.status) == (created.task.id, who.account_id, "qwen-image",
                                                                    "queued")
    assert seen.created_at == seen.updated_at == NOW and seen.created_at.tzinfo is not None
    assert seen.result == {"media": [{"file_id": "file_1", "width": 8}]} and seen.error == {"code": "x",
                                                                                           "message": "\u0e01"}


async def test_another_accounts_task_is_not_found_like_a_missing_one(make_deps: Callable[..., Any]) -> None:
    deps: Deps = await make_deps(run_worker=False)
    owner, other = await new_customer(deps), await new_customer(deps, name="other")
    await queries.create_task(deps.db.driver, _new(owner.account_id, "task_q2"))
    for account, task_id in ((other.account_id, "task_q2"), (owner.account_id, "task_missing")):
        with pytest.raises(NotFound):
            await queries.get_task(deps.db.driver, account, task_id)


async def test_a_create_that_cannot_be_paid_writes_nothing(make_deps: Callable[..., Any]) -> None:
    deps: Deps = await make_deps(run_worker=False)
    who = await new_customer(deps, credits=3)
    with pytest.raises(InsufficientCredits):
        await queries.create_task(deps.db.driver, _new(who.account_id, "task_q3", price=4))
    with pytest.raises(NotFound):
        await queries.create_task(deps.db.driver, _new("acct_missing", "task_q4"))
    async with deps.db.read() as session:
        tasks = await session.scalar(select(func.count()).select_from(Task))
    assert tasks == 0 and (await audit(deps, who.account_id)).balance == 3


async def test_concurrent_creates_never_oversell(make_deps: Callable[..., Any]) -> None:
    deps: Deps = await make_deps(run_worker=False)
    who = await new_customer(deps, credits=40)
    outcomes = await asyncio.gather(*(queries.create_task(deps.db.driver, _new(who.account_id, f"task_r{i}"))
                                      for i in range(30)), return_exceptions=True)
    made = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, InsufficientCredits)]
    assert len(made) == 10 and len(refused) == 20
    books = await audit(deps, who.account_id)
    assert books.balance == 0


async def test_the_storage_key_of_a_deleted_or_missing_file_is_not_found(make_deps: Callable[..., Any]) -> None:
    from sfumato.files import queries as file_queries

    deps: Deps = await make_deps(run_worker=False)
    with pytest.raises(NotFound):
        await file_queries.storage_key(deps.db.driver, "file_missing")


async def test_the_drivers_claim_takes_the_queued_tasks_in_turn_under_a_fresh_lease(
    make_deps: Callable[..., Any]
) -> None:
    from datetime import timedelta

    from sfumato.worker import lease

    deps: Deps = await make_deps(run_worker=False)
    who = await new_customer(deps)
    for i, minute in enumerate((5, 1, 3)):
        await queries.create_task(deps.db.driver, NewTask(
            id=f"task_c{i}", account_id=who.account_id, model="qwen-image", prompt="x", params={"seed": str(i)},
            price=1, request_id=None, now=NOW + timedelta(minutes=minute)))
    first = await lease.claim_through(deps.db.driver, 2, NOW, timedelta(seconds=30))
    rest = await lease.claim_through(deps.db.driver, 5, NOW, timedelta(seconds=30))
    none = await lease.claim_through(deps.db.driver, 5, NOW, timedelta(seconds=30))
    # One account's turns follow its creates (tasks/queue.py), whatever the clock said.
    assert sorted(c.task_id for c in first) == ["task_c0", "task_c1"] and [c.task_id for c in rest] == ["task_c2"]
    assert none == [] and len({c.lease_token for c in first + rest}) == 2
    assert rest[0].params == {"seed": "2"} and rest[0].reference_file_ids == [] and rest[0].attempts == 1
    async with deps.db.read() as session:
        row = await session.get(Task, "task_c2")
    assert row is not None and (row.status, row.lease_token, row.started_at) == ("running", rest[0].lease_token, NOW)
    assert row.lease_expires_at == NOW + timedelta(seconds=30)


async def test_the_wal_is_checkpointed_though_commits_run_on_the_loop(make_deps: Callable[..., Any],
                                                                       backend: str) -> None:
    """Commits made on the loop skip SQLite's autocheckpoint (a disk flush); the driver's own
    passive checkpoints on its thread keep the log from growing with every commit."""
    if backend != "sqlite":
        pytest.skip("a SQLite write-ahead log")
    from sfumato.db import driver as driver_module

    deps: Deps = await make_deps(run_worker=False)
    who = await new_customer(deps, credits=100_000)
    wal = deps.settings.data_dir / "sfumato.db-wal"
    sizes = []
    for round_ in range(4):
        for i in range(2 * driver_module.CHECKPOINT_EVERY):
            await queries.create_task(deps.db.driver, _new(who.account_id, f"task_w{round_}_{i}", price=1))
        await asyncio.sleep(0.1)  # the passive checkpoint runs on the writer thread
        sizes.append(wal.stat().st_size)
    assert sizes[-1] <= sizes[0] * 1.5, sizes  # reused from its start, not grown by every commit
