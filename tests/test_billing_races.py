"""Credits under real concurrency: no oversell, one reservation per task, exactly one ending."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest
from sqlalchemy import select

from sfumato.db.models import LedgerEntry, Task
from sfumato.tasks import lifecycle
from sfumato.tasks.status import Status
from sfumato.worker import lease
from tests.conftest import new_customer, serve
from tests.helpers import claimed_tasks, wait_for_task
from tests.money import books


async def _fire_together(n: int, send) -> list[httpx.Response]:
    gate = asyncio.Event()

    async def one() -> httpx.Response:
        await gate.wait()
        return await send()

    pending = [asyncio.create_task(one()) for _ in range(n)]
    await asyncio.sleep(0)
    gate.set()
    return await asyncio.gather(*pending)


@pytest.mark.parametrize(("model", "price", "affordable", "attempts"), [("qwen-image", 4, 25, 100),
                                                                      ("google-imagen4", 8, 10, 50)])
async def test_concurrent_creates_never_oversell(make_deps, model: str, price: int, affordable: int,
                                                 attempts: int) -> None:
    deps = await make_deps(run_worker=False)
    who = await new_customer(deps, credits=price * affordable)
    async with serve(deps) as client:
        responses = await _fire_together(attempts, lambda: client.post(
            "/api/v1/tasks", json={"model": model, "prompt": "race"}, headers=who.headers))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {202: affordable, 402: attempts - affordable}
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 402} == {"insufficient_credits"}
    state = await books(deps, who.account_id)
    assert state["balance"] == 0
    assert state["kinds"] == Counter(grant=1, reserve=affordable)
    assert state["tasks"] == affordable


async def test_a_refused_create_writes_nothing(make_deps) -> None:
    deps = await make_deps(run_worker=False)
    who = await new_customer(deps, credits=7)
    async with serve(deps) as client:
        refused = await client.post("/api/v1/tasks", json={"model": "google-imagen4", "prompt": "x"},
                                    headers=who.headers)
    assert refused.status_code == 402
    assert await books(deps, who.account_id) == {"balance": 7, "kinds": Counter(grant=1), "tasks": 0}


async def test_success_settles_and_failure_refunds(make_deps) -> None:
    deps = await make_deps()
    who = await new_customer(deps, credits=20)
    async with serve(deps) as client:
        done = await wait_for_task(client, who, (await client.post(
            "/api/v1/tasks", json={"model": "google-imagen4", "prompt": "x"}, headers=who.headers)).json()["id"])
    assert (done["status"], done["final_credits"]) == ("succeeded", 8)
    assert await books(deps, who.account_id) == {"balance": 12, "kinds": Counter(grant=1, reserve=1, settle=1),
                                                 "tasks": 1}

    failing = await make_deps(sandbox_failure_rate=1.0)
    who = await new_customer(failing, credits=20)
    async with serve(failing) as client:
        failed = await wait_for_task(client, who, (await client.post(
            "/api/v1/tasks", json={"model": "qwen-image", "prompt": "x"}, headers=who.headers)).json()["id"])
    assert failed["status"] == "failed" and failed["final_credits"] == 0
    assert failed["error"]["code"] == "sandbox_failure" and failed["error"]["message"]
    assert await books(failing, who.account_id) == {"balance": 20, "kinds": Counter(grant=1, reserve=1, release=1),
                                                    "tasks": 1}


async def test_racing_endings_finish_each_task_exactly_once(make_deps) -> None:
    deps = await make_deps(run_worker=False)
    who = await new_customer(deps, credits=1000)
    claims = await claimed_tasks(deps, who.account_id, 20)

    async def end(kind: str, claim: lease.Claim) -> bool:
        async with deps.db.write() as session:
            now = deps.clock.now()
            if kind == "succeed":
                return await lifecycle.succeed(session, claim.task_id, lease_token=claim.lease_token,
                                               result={"media": []}, charged=4, now=now)
            if kind == "fail":
                return await lifecycle.fail(session, claim.task_id, code="x", message="x", now=now,
                                            lease_token=claim.lease_token)
            return await lifecycle.cancel(session, claim.task_id, now=now, source=(Status.RUNNING,))

    kinds = ["succeed", "fail", "cancel", "succeed"]
    results = await asyncio.gather(*(end(kind, claim) for claim in claims for kind in kinds))
    wins = [results[i:i + len(kinds)] for i in range(0, len(results), len(kinds))]
    assert all(sum(w) == 1 for w in wins), wins
    async with deps.db.read() as session:
        tasks = list(await session.scalars(select(Task).where(Task.account_id == who.account_id)))
        endings = Counter((await session.scalars(
            select(LedgerEntry.task_id).where(LedgerEntry.kind.in_(["settle", "release"])))).all())
    assert all(t.status in ("succeeded", "failed", "canceled") for t in tasks)
    assert set(endings.values()) == {1} and len(endings) == 20
    state = await books(deps, who.account_id)
    succeeded = sum(t.status == "succeeded" for t in tasks)
    assert state["balance"] == 1000 - 4 * succeeded
