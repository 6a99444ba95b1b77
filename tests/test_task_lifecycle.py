"""Cancel, time limits, wake-ups, fencing and crash recovery of tasks."""

from __future__ import annotations

import asyncio
from collections import Counter

from sqlalchemy import select

from sfumato.clock import FrozenClock
from sfumato.db.models import Task
from sfumato.tasks import lifecycle
from sfumato.worker import lease
from sfumato.worker.recovery import recover_expired_leases
from tests.conftest import new_customer, serve
from tests.helpers import claimed_tasks, create, wait_for_task
from tests.money import books


async def test_cancel_a_queued_task_refunds_it_at_once(make_deps) -> None:
    deps = await make_deps(run_worker=False)
    who = await new_customer(deps, credits=10)
    async with serve(deps) as client:
        task = (await create(client, who, model="qwen-image")).json()
        canceled = await client.post(f"/api/v1/tasks/{task['id']}/cancel", headers=who.headers)
        assert canceled.status_code == 200
        body = canceled.json()
        assert (body["status"], body["final_credits"], body["error"]["code"]) == ("canceled", 0, "canceled")
        again = await client.post(f"/api/v1/tasks/{task['id']}/cancel", headers=who.headers)
        assert again.status_code == 200 and again.json()["status"] == "canceled"
    assert await books(deps, who.account_id) == {"balance": 10, "kinds": Counter(grant=1, reserve=1, release=1),
                                                 "tasks": 1}


async def test_a_finished_task_cannot_be_canceled(client, customer) -> None:
    task = await wait_for_task(client, customer, (await create(client, customer, model="qwen-image")).json()["id"])
    refused = await client.post(f"/api/v1/tasks/{task['id']}/cancel", headers=customer.headers)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "task_not_cancelable"
    assert (await client.get(f"/api/v1/tasks/{task['id']}", headers=customer.headers)).json()["status"] == "succeeded"


async def test_cancel_a_running_task_stops_it_and_refunds_it(make_deps) -> None:
    deps = await make_deps(sandbox_latency_ms="60000")
    who = await new_customer(deps, credits=10)
    async with serve(deps) as client:
        task_id = (await create(client, who, model="qwen-image")).json()["id"]
        await wait_for_task(client, who, task_id, until={"running"})
        answer = await client.post(f"/api/v1/tasks/{task_id}/cancel", headers=who.headers)
        assert answer.status_code == 200
        ended = await wait_for_task(client, who, task_id)
    assert ended["status"] == "canceled" and ended["final_credits"] == 0
    assert (await books(deps, who.account_id))["balance"] == 10
    assert [p for p in deps.settings.storage_dir.rglob("*") if p.is_file()] == []


async def test_a_slow_provider_fails_the_task_at_the_time_limit(make_deps) -> None:
    deps = await make_deps(task_timeout_seconds=0.3, sandbox_latency_ms="60000")
    who = await new_customer(deps, credits=10)
    async with serve(deps) as client:
        ended = await wait_for_task(client, who, (await create(client, who, model="qwen-image")).json()["id"])
    assert (ended["status"], ended["error"]["code"]) == ("failed", "timeout")
    assert (await books(deps, who.account_id))["balance"] == 10


async def test_a_new_task_wakes_an_idle_worker(make_deps) -> None:
    """The poll interval is 60 s, so only the wake-up signal can start the task this soon."""
    deps = await make_deps(worker_poll_seconds=60)
    who = await new_customer(deps)
    async with serve(deps) as client:
        await asyncio.sleep(0.3)  # let the worker go idle
        task_id = (await create(client, who, model="qwen-image")).json()["id"]
        done = await wait_for_task(client, who, task_id, timeout=10)
    assert done["status"] == "succeeded"


async def test_many_tasks_run_at_once(make_deps) -> None:
    deps = await make_deps(sandbox_latency_ms="400", worker_concurrency=64)
    who = await new_customer(deps)
    async with serve(deps) as client:
        ids = [(await create(client, who, model="grok-imagine")).json()["id"] for _ in range(40)]
        peak = 0
        while True:
            page = (await client.get("/api/v1/tasks", params={"limit": 100}, headers=who.headers)).json()["data"]
            states = Counter(t["status"] for t in page)
            peak = max(peak, states["running"])
            if states["succeeded"] == len(ids):
                break
            await asyncio.sleep(0.02)
    assert peak > 1


async def test_expired_leases_are_requeued_then_failed_and_refunded(make_deps) -> None:
    clock = FrozenClock()
    deps = await make_deps(run_worker=False, clock=clock, lease_seconds=30, max_attempts=2)
    who = await new_customer(deps, credits=20)
    [claim] = await claimed_tasks(deps, who.account_id, 1)
    clock.advance(seconds=29)
    assert await recover_expired_leases(deps) == (0, 0)  # still inside its lease: untouched
    clock.advance(seconds=2)
    assert await recover_expired_leases(deps) == (1, 0)
    async with deps.db.write() as session:
        [again] = await lease.claim(session, 1, deps.clock.now(), deps.lease)
    assert (again.task_id, again.attempts) == (claim.task_id, 2)
    clock.advance(seconds=31)
    assert await recover_expired_leases(deps) == (0, 1)
    async with deps.db.read() as session:
        task = await session.get(Task, claim.task_id)
    assert task is not None and task.status == "failed" and task.error == {
        "code": "worker_lost", "message": task.error["message"]}
    assert (await books(deps, who.account_id))["balance"] == 20


async def test_a_worker_that_lost_its_lease_cannot_finish_the_task(make_deps) -> None:
    clock = FrozenClock()
    deps = await make_deps(run_worker=False, clock=clock)
    who = await new_customer(deps, credits=20)
    [stale] = await claimed_tasks(deps, who.account_id, 1)
    clock.advance(seconds=deps.settings.lease_seconds + 1)
    await recover_expired_leases(deps)
    async with deps.db.write() as session:
        [fresh] = await lease.claim(session, 1, deps.clock.now(), deps.lease)
    async with deps.db.write() as session:
        assert not await lifecycle.succeed(session, stale.task_id, lease_token=stale.lease_token,
                                           result={"media": []}, charged=4, now=deps.clock.now())
        assert not await lifecycle.fail(session, stale.task_id, code="x", message="x", now=deps.clock.now(),
                                        lease_token=stale.lease_token)
    async with deps.db.write() as session:
        assert await lifecycle.succeed(session, fresh.task_id, lease_token=fresh.lease_token,
                                       result={"media": []}, charged=4, now=deps.clock.now())
    assert (await books(deps, who.account_id))["kinds"] == Counter(grant=1, reserve=1, settle=1)


async def test_tasks_left_running_are_finished_by_the_next_start(make_deps) -> None:
    deps = await make_deps(lease_seconds=0.5, maintenance_interval_seconds=0.1)
    who = await new_customer(deps)
    claims = await claimed_tasks(deps, who.account_id, 3)  # a "dead worker" holds them
    async with serve(deps) as client:
        done = [await wait_for_task(client, who, c.task_id, timeout=20) for c in claims]
    assert {d["status"] for d in done} == {"succeeded"}
    async with deps.db.read() as session:
        attempts = (await session.scalars(select(Task.attempts))).all()
    assert set(attempts) == {2}
