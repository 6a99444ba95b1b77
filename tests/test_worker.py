"""The worker and recovery (reliability §3): cancel, time limit, crash recovery, fencing of a
stale worker, wake-ups, and many tasks at once. Every ending is checked against the books."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from sfumato.clock import FrozenClock
from sfumato.db.models import LedgerEntry, StoredFile, Task
from sfumato.deps import Deps
from sfumato.tasks import lifecycle
from sfumato.worker import lease
from sfumato.worker.loop import Worker
from sfumato.worker.recovery import recover_expired_leases
from sfumato.worker.runner import TaskRun
from tests.conftest import new_customer, serve
from tests.helpers import claimed_tasks, create, wait_for_task
from tests.money import audit


async def _task(deps: Deps, task_id: str) -> Task:
    async with deps.db.read() as session:
        task = await session.get(Task, task_id)
    assert task is not None
    return task


def _stored_files(deps: Deps) -> list[str]:
    return [str(p) for p in deps.settings.storage_dir.rglob("*") if p.is_file()]


# --- cancel -------------------------------------------------------------------------------------


async def test_cancel_a_queued_task_refunds_it_at_once_and_again_is_a_no_op(make_deps) -> None:
    deps = await make_deps(run_worker=False)
    who = await new_customer(deps, credits=10)
    async with serve(deps) as client:
        task = (await create(client, who, model="qwen-image")).json()
        canceled = await client.post(f"/api/v1/tasks/{task['id']}/cancel", headers=who.headers)
        again = await client.post(f"/api/v1/tasks/{task['id']}/cancel", headers=who.headers)
        read = (await client.get(f"/api/v1/tasks/{task['id']}", headers=who.headers)).json()
    assert canceled.status_code == 200
    body = canceled.json()
    assert (body["status"], body["final_credits"], body["result"]) == ("canceled", 0, None)
    assert body["error"]["code"] == "canceled"
    assert again.status_code == 200 and again.json() == body == read
    books = await audit(deps, who.account_id)
    assert (books.balance, books.kinds) == (10, Counter(grant=1, reserve=1, release=1))


async def test_a_finished_task_cannot_be_canceled(make_deps) -> None:
    deps = await make_deps()
    who = await new_customer(deps, credits=10)
    async with serve(deps) as client:
        task_id = (await create(client, who, model="qwen-image")).json()["id"]
        done = await wait_for_task(client, who, task_id)
        refused = await client.post(f"/api/v1/tasks/{task_id}/cancel", headers=who.headers)
        after = (await client.get(f"/api/v1/tasks/{task_id}", headers=who.headers)).json()
    assert done["status"] == "succeeded"
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "task_not_cancelable"
    unsigned = lambda task: {**task, "result": [m["name"] for m in task["result"]["media"]]}  # noqa: E731
    assert unsigned(after) == unsigned(done)  # unchanged, but for the freshly signed URLs
    books = await audit(deps, who.account_id)
    assert (books.balance, books.kinds) == (6, Counter(grant=1, reserve=1, settle=1))


async def test_cancel_a_running_task_stops_its_provider_call_and_refunds_it(make_deps) -> None:
    """The provider would take 5 s and then succeed; ending ``canceled`` proves the call was stopped."""
    deps = await make_deps(sandbox_latency_ms="5000")
    who = await new_customer(deps, credits=10)
    async with serve(deps) as client:
        task_id = (await create(client, who, model="qwen-image")).json()["id"]
        await wait_for_task(client, who, task_id, until={"running"})
        answer = await client.post(f"/api/v1/tasks/{task_id}/cancel", headers=who.headers)
        ended = await wait_for_task(client, who, task_id)
    assert answer.status_code == 200 and answer.json()["status"] in ("running", "canceled")
    assert (ended["status"], ended["final_credits"], ended["error"]["code"]) == ("canceled", 0, "canceled")
    books = await audit(deps, who.account_id)
    assert (books.balance, books.kinds) == (10, Counter(grant=1, reserve=1, release=1))
    assert _stored_files(deps) == []


async def test_a_cancel_reaches_a_worker_in_another_process_through_its_heartbeat(make_deps) -> None:
    """No in-process signal reaches this run (no worker is registered): the lease renewal sees
    ``cancel_requested`` and stops it."""
    deps = await make_deps(run_worker=False, lease_seconds=0.3, sandbox_latency_ms="5000")
    who = await new_customer(deps, credits=10)
    [claim] = await claimed_tasks(deps, who.account_id, 1)
    run = asyncio.create_task(TaskRun(deps, claim).execute())
    async with serve(deps) as client:
        answer = await client.post(f"/api/v1/tasks/{claim.task_id}/cancel", headers=who.headers)
    await run
    assert answer.status_code == 200 and answer.json()["status"] == "running"
    task = await _task(deps, claim.task_id)
    assert (task.status, task.final_credits, task.lease_token) == ("canceled", 0, None)
    assert (await audit(deps, who.account_id)).balance == 10


async def test_the_time_limit_fails_a_slow_task_and_refunds_it(make_deps) -> None:
    deps = await make_deps(task_timeout_seconds=0.2, sandbox_latency_ms="2000")
    who = await new_customer(deps, credits=10)
    async with serve(deps) as client:
        ended = await wait_for_task(client, who, (await create(client, who, model="qwen-image")).json()["id"])
    assert (ended["status"], ended["error"]["code"], ended["final_credits"]) == ("failed", "timeout", 0)
    books = await audit(deps, who.account_id)
    assert (books.balance, books.kinds) == (10, Counter(grant=1, reserve=1, release=1))
    assert _stored_files(deps) == []


# --- crash recovery -----------------------------------------------------------------------------


async def test_expired_leases_go_back_to_the_queue_then_fail_refunded_at_max_attempts(make_deps) -> None:
    clock = FrozenClock()
    deps = await make_deps(run_worker=False, clock=clock, lease_seconds=30, max_attempts=2)
    who = await new_customer(deps, credits=20)
    dead = await claimed_tasks(deps, who.account_id, 3)  # a worker that will never finish them
    clock.advance(seconds=29)
    assert await recover_expired_leases(deps) == (0, 0)  # inside the lease: untouched
    clock.advance(seconds=2)
    assert await recover_expired_leases(deps) == (3, 0)
    for claim in dead:
        task = await _task(deps, claim.task_id)
        assert (task.status, task.attempts, task.lease_token) == ("queued", 1, None)
    async with deps.db.write() as session:
        second = await lease.claim(session, 10, clock.now(), deps.lease)  # another dead worker
    assert sorted((c.task_id, c.attempts) for c in second) == sorted((c.task_id, 2) for c in dead)
    clock.advance(seconds=31)
    assert await recover_expired_leases(deps) == (0, 3)
    for claim in dead:
        task = await _task(deps, claim.task_id)
        assert (task.status, task.final_credits, task.attempts) == ("failed", 0, 2)
        assert task.error is not None and task.error["code"] == "worker_lost"
    books = await audit(deps, who.account_id)
    assert (books.balance, books.kinds) == (20, Counter(grant=1, reserve=3, release=3))


@pytest.mark.parametrize("max_attempts", [3, 1], ids=["attempts-left", "last-attempt"])
async def test_a_cancel_asked_of_a_task_whose_worker_died_is_honoured_by_recovery(make_deps, max_attempts) -> None:
    """The client asked to cancel while the task ran; its worker then died. Recovery must not
    put the task back in the queue, where it would run again and be charged, nor report it as
    lost when it was out of attempts: it ends canceled, as asked."""
    clock = FrozenClock()
    deps = await make_deps(run_worker=False, clock=clock, lease_seconds=30, auth_cache_seconds=0,
                           max_attempts=max_attempts)
    who = await new_customer(deps, credits=10)
    [claim] = await claimed_tasks(deps, who.account_id, 1)
    async with serve(deps) as client:
        answer = await client.post(f"/api/v1/tasks/{claim.task_id}/cancel", headers=who.headers)
        assert answer.json()["status"] == "running"
        clock.advance(seconds=31)
        assert await recover_expired_leases(deps) == (0, 1)
        ended = (await client.get(f"/api/v1/tasks/{claim.task_id}", headers=who.headers)).json()
    assert (ended["status"], ended["final_credits"], ended["error"]["code"]) == ("canceled", 0, "canceled")
    books = await audit(deps, who.account_id)
    assert (books.balance, books.kinds) == (10, Counter(grant=1, reserve=1, release=1))


async def test_tasks_left_running_by_a_crash_are_finished_by_the_next_start(make_deps) -> None:
    """The poll interval is 30 s: recovered tasks are picked up because recovery wakes the worker."""
    deps = await make_deps(lease_seconds=0.5, maintenance_interval_seconds=0.1, worker_poll_seconds=30)
    who = await new_customer(deps, credits=100)
    dead = await claimed_tasks(deps, who.account_id, 3)  # claimed by a process that then crashed
    async with serve(deps) as client:
        done = [await wait_for_task(client, who, c.task_id, timeout=10) for c in dead]
    assert [d["status"] for d in done] == ["succeeded"] * 3
    assert all(d["final_credits"] == 4 for d in done)
    assert [(await _task(deps, c.task_id)).attempts for c in dead] == [2, 2, 2]
    books = await audit(deps, who.account_id)
    assert (books.balance, books.kinds) == (88, Counter(grant=1, reserve=3, settle=3))


# --- fencing ------------------------------------------------------------------------------------


async def _take_over(deps: Deps, clock: FrozenClock, account_id: str) -> tuple[lease.Claim, lease.Claim]:
    """A task claimed by a worker that then stalls past its lease, and claimed again by another."""
    [stale] = await claimed_tasks(deps, account_id, 1)
    clock.advance(seconds=deps.settings.lease_seconds + 1)
    assert await recover_expired_leases(deps) == (1, 0)
    async with deps.db.write() as session:
        [fresh] = await lease.claim(session, 1, clock.now(), deps.lease)
    assert fresh.task_id == stale.task_id and fresh.lease_token != stale.lease_token
    return stale, fresh


async def test_a_worker_that_lost_its_lease_cannot_end_the_task(make_deps) -> None:
    clock = FrozenClock()
    deps = await make_deps(run_worker=False, clock=clock)
    who = await new_customer(deps, credits=20)
    stale, fresh = await _take_over(deps, clock, who.account_id)
    before = await _task(deps, stale.task_id)
    async with deps.db.write() as session:
        now = clock.now()
        assert not await lifecycle.succeed(session, stale.task_id, lease_token=stale.lease_token,
                                           result={"media": []}, charged=4, now=now)
        assert not await lifecycle.fail(session, stale.task_id, code="x", message="x", now=now,
                                        lease_token=stale.lease_token)
        assert not await lifecycle.requeue(session, stale.task_id, lease_token=stale.lease_token, now=now)
        assert await lease.renew(session, stale.task_id, stale.lease_token, now, deps.lease) is None
    after = await _task(deps, stale.task_id)
    assert (after.status, after.lease_token, after.result, after.updated_at) == (
        "running", fresh.lease_token, None, before.updated_at)
    assert (await audit(deps, who.account_id)).kinds == Counter(grant=1, reserve=1)
    async with deps.db.write() as session:
        assert await lifecycle.succeed(session, fresh.task_id, lease_token=fresh.lease_token,
                                       result={"media": []}, charged=4, now=clock.now())
    assert (await audit(deps, who.account_id)).kinds == Counter(grant=1, reserve=1, settle=1)


async def test_a_stale_run_that_completes_leaves_no_output_behind(make_deps) -> None:
    """The stalled worker wakes up and its provider call succeeds: its output bytes and rows are
    discarded, and the task stays with the worker that owns it now."""
    clock = FrozenClock()
    deps = await make_deps(run_worker=False, clock=clock)
    who = await new_customer(deps, credits=20)
    stale, fresh = await _take_over(deps, clock, who.account_id)
    await TaskRun(deps, stale).execute()
    task = await _task(deps, stale.task_id)
    assert (task.status, task.lease_token, task.result) == ("running", fresh.lease_token, None)
    async with deps.db.read() as session:
        assert await session.scalar(select(func.count()).select_from(StoredFile)) == 0
        assert await session.scalar(select(func.count()).select_from(LedgerEntry)
                                    .where(LedgerEntry.kind == "settle")) == 0
    assert _stored_files(deps) == []
    await TaskRun(deps, fresh).execute()
    assert (await _task(deps, fresh.task_id)).status == "succeeded"
    assert len(_stored_files(deps)) == 1


# --- waking up and running many at once ---------------------------------------------------------


async def test_a_new_task_wakes_an_idle_worker(make_deps) -> None:
    """The poll interval is 30 s, so only the wake-up signal can start the task this soon."""
    deps = await make_deps(worker_poll_seconds=30)
    who = await new_customer(deps, credits=10)
    async with serve(deps) as client:
        await asyncio.sleep(0.3)  # the worker has looked, found nothing, and gone to sleep
        task_id = (await create(client, who, model="qwen-image")).json()["id"]
        done = await wait_for_task(client, who, task_id, timeout=5)
    assert done["status"] == "succeeded"


async def _statuses(deps: Deps) -> Counter[str]:
    async with deps.db.read() as session:
        return Counter(dict((await session.execute(select(Task.status, func.count()).group_by(Task.status))).all()))


async def test_many_tasks_run_side_by_side_and_all_succeed(make_deps) -> None:
    deps = await make_deps(sandbox_latency_ms="300", worker_concurrency=64)
    who = await new_customer(deps, credits=1000)
    peak, deadline = 0, asyncio.get_running_loop().time() + 30  # a safety net, not a speed check
    async with serve(deps) as client:
        for _ in range(40):
            assert (await create(client, who, model="grok-imagine")).status_code == 202
        while (counts := await _statuses(deps))["succeeded"] + counts["failed"] < 40:
            peak = max(peak, counts["running"])
            assert asyncio.get_running_loop().time() < deadline, counts
            await asyncio.sleep(0.01)
    assert counts == Counter(succeeded=40)
    assert peak > 1, "the tasks ran one after another"
    books = await audit(deps, who.account_id)
    assert (books.balance, books.kinds) == (1000 - 40 * 4, Counter(grant=1, reserve=40, settle=40))


async def test_a_cancel_racing_a_requeue_still_cancels(make_deps, monkeypatch) -> None:
    """The client's cancel reads the task running; recovery requeues it before the cancel writes.
    The cancel must not be lost (the task would run again): it cancels the queued task."""
    from sqlalchemy.ext.asyncio import AsyncSession

    from sfumato.tasks import service

    clock = FrozenClock()
    deps = await make_deps(run_worker=False, clock=clock)
    who = await new_customer(deps, credits=10)
    [claim] = await claimed_tasks(deps, who.account_id, 1)
    real_refresh = AsyncSession.refresh
    raced = False

    async def refresh_then_requeue(self, instance, *args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal raced
        await real_refresh(self, instance, *args, **kwargs)
        if not raced and getattr(instance, "status", None) == "running":
            raced = True  # recovery, in another transaction, wins the row right now
            async with deps.db.write() as other:
                assert await lifecycle.requeue(other, claim.task_id, lease_token=claim.lease_token, now=clock.now())

    if deps.db.is_sqlite:
        pytest.skip("SQLite has one writer: the cancel's transaction holds it, so no requeue can interleave")
    monkeypatch.setattr(AsyncSession, "refresh", refresh_then_requeue)
    async with deps.db.write() as session:
        task = await service.cancel_task(session, who.account_id, claim.task_id, clock.now(), running_cancelable=True)
    assert raced and task.status == "canceled"
    books = await audit(deps, who.account_id)
    assert (books.balance, books.kinds) == (10, Counter(grant=1, reserve=1, release=1))


async def test_a_worker_says_when_it_stops(make_deps: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    deps = await make_deps(run_worker=False)
    stop = asyncio.Event()
    stop.set()
    with caplog.at_level("INFO", logger="sfumato.worker"):
        await Worker(deps).run(stop)
    assert "worker stopped" in caplog.messages
