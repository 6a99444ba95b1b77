"""A task handed straight to this process's worker (``Worker.run_now``), as the OpenAI door does
with one image: written already claimed in the create's own transaction, run like any claimed
task, answered from the bytes the worker stored; and the queue taking over when no slot is free
or the worker is stopping. On both databases."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from sfumato.catalog import validate_task_request
from sfumato.db.models import LedgerEntry, StoredFile, Task
from sfumato.deps import Deps
from sfumato.errors import InsufficientCredits
from sfumato.tasks import service
from sfumato.worker import lease
from sfumato.worker.loop import Worker
from sfumato.worker.recovery import maintain
from tests.conftest import new_customer, serve
from tests.money import audit

NOW = datetime(2026, 12, 1, 12, 0, 0, 500000, tzinfo=UTC)
BODY = {"model": "gpt-image-1.5", "prompt": "a red fox"}


def _request(deps: Deps) -> Any:
    return validate_task_request({"model": "gpt-image-1-5", "prompt": "a red fox"}, deps.catalog,
                                 max_prompt_chars=1000)


def _claims_seen(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Ids that went through the queue's claim (``lease.claim_through``)."""
    seen: list[str] = []
    original = lease.claim_through

    async def counting(*args: Any, **kwargs: Any) -> list[lease.Claim]:
        claims = await original(*args, **kwargs)
        seen.extend(c.task_id for c in claims)
        return claims

    monkeypatch.setattr(lease, "claim_through", counting)
    return seen


async def test_a_task_created_running_is_a_claimed_task_in_the_books(make_deps: Callable[..., Any]) -> None:
    deps: Deps = await make_deps(run_worker=False)
    who = await new_customer(deps, credits=10)
    claim = await service.create_running(deps.db.driver, who.account_id, _request(deps), NOW,
                                         ("tok_1", NOW + timedelta(seconds=30)))
    async with deps.db.read() as session:
        task = await session.get(Task, claim.task_id)
        entries = (await session.scalars(select(LedgerEntry).where(LedgerEntry.task_id == claim.task_id))).all()
    assert task is not None
    assert (task.status, task.attempts, task.lease_token, task.reserved_credits) == ("running", 1, "tok_1", 4)
    assert task.started_at == task.created_at == NOW and task.lease_expires_at == NOW + timedelta(seconds=30)
    assert [(e.kind, e.amount) for e in entries] == [("reserve", -4)]
    assert (claim.attempts, claim.reserved_credits, claim.lease_token) == (1, 4, "tok_1")
    assert await lease.claim_through(deps.db.driver, 10, NOW, deps.lease) == []  # no one else's to claim
    assert (await audit(deps, who.account_id)).balance == 6


async def test_a_task_created_running_by_a_process_that_died_is_recovered(make_deps: Callable[..., Any]) -> None:
    deps: Deps = await make_deps(run_worker=False)
    who = await new_customer(deps, credits=10)
    now = deps.clock.now()
    claim = await service.create_running(deps.db.driver, who.account_id, _request(deps), now,
                                         ("tok_dead", now - timedelta(seconds=1)))  # its lease has run out
    await maintain(deps)
    async with deps.db.read() as session:
        task = await session.get(Task, claim.task_id)
    assert task is not None and task.status == "queued" and task.lease_token is None
    [again] = await lease.claim_through(deps.db.driver, 10, deps.clock.now(), deps.lease)
    assert again.task_id == claim.task_id and again.attempts == 2


async def test_no_credits_creates_nothing_and_frees_the_slot(make_deps: Callable[..., Any]) -> None:
    deps: Deps = await make_deps(run_worker=False, worker_concurrency="1")
    who = await new_customer(deps, credits=1)
    worker = Worker(deps)
    with pytest.raises(InsufficientCredits):
        await worker.run_now(lambda held: service.create_running(deps.db.driver, who.account_id, _request(deps),
                                                                  deps.clock.now(), held))
    assert worker._free() == 1
    async with deps.db.read() as session:
        assert (await session.scalars(select(Task))).all() == []


async def test_the_door_runs_one_image_past_the_queue_and_answers_from_its_bytes(
        make_deps: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    deps: Deps = await make_deps(sandbox_latency_ms="0")
    who = await new_customer(deps, credits=100)
    claimed = _claims_seen(monkeypatch)
    async with serve(deps) as client:
        async def no_read_back(key: str) -> bytes:
            raise AssertionError(f"read back {key}")

        monkeypatch.setattr(deps.storage, "get", no_read_back)
        answer = await client.post("/v1/images/generations", json=BODY, headers=who.headers)
        monkeypatch.undo()
        assert answer.status_code == 200, answer.text
        [image] = answer.json()["data"]
        async with deps.db.read() as session:
            [task] = (await session.scalars(select(Task))).all()
            [stored] = (await session.scalars(select(StoredFile).where(StoredFile.task_id == task.id))).all()
        assert base64.b64decode(image["b64_json"]) == await deps.storage.get(stored.storage_key)
        assert (task.status, task.attempts, task.final_credits) == ("succeeded", 1, 4)
        assert task.started_at == task.created_at  # never queued
        assert claimed == []
        books = await audit(deps, who.account_id)
        assert books.balance == 96


async def test_with_every_slot_busy_the_door_queues_and_still_answers(
        make_deps: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    deps: Deps = await make_deps(sandbox_latency_ms="300", worker_concurrency="1")
    who = await new_customer(deps, credits=100)
    claimed = _claims_seen(monkeypatch)
    async with serve(deps) as client:
        answers = await asyncio.gather(*(client.post("/v1/images/generations", json=BODY, headers=who.headers)
                                         for _ in range(3)))
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert all(base64.b64decode(a.json()["data"][0]["b64_json"]).startswith(b"\x89PNG") for a in answers)
    assert len(claimed) == 2  # one ran at once, two waited their turn in the queue
    books = await audit(deps, who.account_id)
    assert books.balance == 100 - 3 * 4


async def test_a_stopping_worker_takes_nothing_at_once(make_deps: Callable[..., Any]) -> None:
    deps: Deps = await make_deps(run_worker=False)
    worker = Worker(deps)
    stop = asyncio.Event()
    stop.set()
    await worker.run(stop)

    async def never(held: Any) -> Any:
        raise AssertionError("created while stopping")

    assert await worker.run_now(never) is None


async def test_a_stopping_worker_lets_a_maintenance_round_finish(
        make_deps: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopping does not cancel maintenance mid-round (mid-transaction): it ends by itself."""
    from sfumato.worker import loop

    deps: Deps = await make_deps(run_worker=False)
    began, finished = asyncio.Event(), []

    async def slow_round(_: Deps) -> None:
        began.set()
        await asyncio.sleep(0.3)
        finished.append(True)

    monkeypatch.setattr(loop, "maintain", slow_round)
    stop = asyncio.Event()
    running = asyncio.create_task(Worker(deps).run(stop))
    await began.wait()
    stop.set()
    await running
    assert finished == [True]
