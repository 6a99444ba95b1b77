"""Fair dispatch, priority, concurrency caps and ``Cancel-After`` deadlines, on both databases.

Each task gets a turn when it is created (``tasks/queue.py``: start-time fair queueing by
account) and the claim (``worker/lease.py``) takes the lowest turns first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from sfumato.catalog import validate_task_request
from sfumato.clock import FrozenClock
from sfumato.deps import Deps
from sfumato.tasks import lifecycle, queries, service
from sfumato.worker import lease
from sfumato.worker.recovery import end_missed_deadlines
from tests.conftest import Customer, new_customer, serve
from tests.helpers import create, wait_for_task
from tests.money import audit
from tests.processes import Processes, wait_until


async def _queue(deps: Deps, clock: FrozenClock, account_id: str, n: int = 1, ageing: int = 100,
                 **body: Any) -> list[str]:
    """Queue ``n`` plain tasks, a millisecond apart, through the create's own path."""
    request = validate_task_request({"model": "qwen-image", "prompt": "x", **body}, deps.catalog,
                                    max_prompt_chars=100)
    ids = []
    for _ in range(n):
        clock.advance(milliseconds=1)
        ids.append((await service.create_plain(deps.db.driver, account_id, request, clock.now(), ageing)).id)
    return ids


async def _claim_one(deps: Deps, clock: FrozenClock, **kwargs: Any) -> lease.Claim | None:
    claims = await lease.claim_through(deps.db.driver, 1, clock.now(), deps.lease, **kwargs)
    return claims[0] if claims else None


async def _succeed(deps: Deps, claim: lease.Claim) -> None:
    async with deps.db.write() as session:
        assert await lifecycle.succeed(session, claim.task_id, lease_token=claim.lease_token, result={"media": []},
                                       charged=claim.reserved_credits, now=deps.clock.now())


@pytest.fixture
async def frozen(make_deps: Callable[..., Any]) -> tuple[Deps, FrozenClock]:
    clock = FrozenClock()
    deps = await make_deps(run_worker=False, clock=clock)
    return deps, clock


async def test_one_task_of_another_account_is_next_after_500_queued(frozen: tuple[Deps, FrozenClock]) -> None:
    deps, clock = frozen
    big, small = await new_customer(deps, credits=4000, name="big"), await new_customer(deps, name="small")
    await _queue(deps, clock, big.account_id, 500)
    [single] = await _queue(deps, clock, small.account_id)
    first = await _claim_one(deps, clock)
    assert first is not None and first.account_id == big.account_id  # older, and nobody ran yet
    second = await _claim_one(deps, clock)
    assert second is not None and second.task_id == single, "the other account waited behind the 500"


async def test_accounts_take_turns(frozen: tuple[Deps, FrozenClock]) -> None:
    deps, clock = frozen
    who = [await new_customer(deps, name=f"c{i}") for i in range(3)]
    for customer, n in zip(who, (6, 3, 1), strict=True):
        await _queue(deps, clock, customer.account_id, n)
    order = []
    while (claim := await _claim_one(deps, clock)) is not None:
        order.append(next(i for i, c in enumerate(who) if c.account_id == claim.account_id))
    # Each account's first, then each one's second, …: round-robin while they all have work.
    assert order == [0, 1, 2, 0, 1, 0, 1, 0, 0, 0]


async def test_what_an_account_already_runs_counts_against_its_turn(frozen: tuple[Deps, FrozenClock]) -> None:
    """An account running 3 tasks has its next one behind another account's first."""
    deps, clock = frozen
    busy, idle = await new_customer(deps, name="busy"), await new_customer(deps, name="idle")
    await _queue(deps, clock, busy.account_id, 5)
    running = await lease.claim_through(deps.db.driver, 3, clock.now(), deps.lease)
    assert len(running) == 3
    [later] = await _queue(deps, clock, idle.account_id)
    claim = await _claim_one(deps, clock)
    assert claim is not None and claim.task_id == later


async def test_a_concurrency_cap_keeps_the_rest_queued_never_refused(frozen: tuple[Deps, FrozenClock]) -> None:
    deps, clock = frozen
    capped, other = await new_customer(deps, name="capped"), await new_customer(deps, name="other")
    await _queue(deps, clock, capped.account_id, 5)
    claims = await lease.claim_through(deps.db.driver, 10, clock.now(), deps.lease, cap=2)
    assert [c.account_id for c in claims] == [capped.account_id] * 2
    assert await lease.claim_through(deps.db.driver, 10, clock.now(), deps.lease, cap=2) == []
    [theirs] = await _queue(deps, clock, other.account_id)
    assert [c.task_id for c in await lease.claim_through(deps.db.driver, 10, clock.now(), deps.lease, cap=2)] \
        == [theirs]
    await _succeed(deps, claims[0])  # a slot of the capped account frees: one more of its tasks starts
    more = await lease.claim_through(deps.db.driver, 10, clock.now(), deps.lease, cap=2)
    assert [c.account_id for c in more] == [capped.account_id]
    row = await queries.get_task(deps.db.driver, capped.account_id, more[0].task_id)
    assert row.status == "running"
    assert (await audit(deps, capped.account_id)).statuses["queued"] == 2  # waiting, not refused


async def test_low_priority_waits_for_the_accounts_normal_tasks(frozen: tuple[Deps, FrozenClock]) -> None:
    deps, clock = frozen
    who = await new_customer(deps)
    [low] = await _queue(deps, clock, who.account_id, priority="low")
    normal = await _queue(deps, clock, who.account_id, 2)
    order = [(await _claim_one(deps, clock)) for _ in range(3)]
    assert [c.task_id for c in order if c] == [*normal, low]


async def test_low_priority_finishes_under_a_steady_normal_load(frozen: tuple[Deps, FrozenClock]) -> None:
    """One worker slot, a normal task arriving for each one that starts: the low one, placed 10
    turns behind, reaches the front after 10 turns and runs."""
    deps, clock = frozen
    who = await new_customer(deps, credits=10_000)
    [low] = await _queue(deps, clock, who.account_id, priority="low", ageing=10)
    await _queue(deps, clock, who.account_id, 2)
    started = None
    for step in range(40):
        await _queue(deps, clock, who.account_id)
        claim = await _claim_one(deps, clock)
        assert claim is not None
        if claim.task_id == low:
            started = step
            break
        await _succeed(deps, claim)
        clock.advance(seconds=1)
    assert started is not None, "the low task starved"
    assert 8 <= started <= 12, f"it ran after ageing, by age, not before: step {started}"


async def test_low_priority_yields_to_other_accounts_normal_tasks_only_within_its_ageing(
    frozen: tuple[Deps, FrozenClock],
) -> None:
    deps, clock = frozen
    a, b = await new_customer(deps, name="a"), await new_customer(deps, name="b")
    [low] = await _queue(deps, clock, a.account_id, priority="low", ageing=2)
    normal = await _queue(deps, clock, b.account_id, 3)
    order = [(await _claim_one(deps, clock)) for _ in range(4)]
    assert [c.task_id for c in order if c] == [normal[0], low, normal[1], normal[2]]


async def test_a_batch_of_low_tasks_does_not_block_another_accounts_normal_ones(
    frozen: tuple[Deps, FrozenClock],
) -> None:
    """Low tasks take turns among themselves too: 50 of them, aged into the front, interleave
    with a newcomer's normal tasks instead of all running first."""
    deps, clock = frozen
    batch, newcomer = await new_customer(deps, name="batch"), await new_customer(deps, name="new")
    await _queue(deps, clock, batch.account_id, 50, priority="low", ageing=0)
    mine = await _queue(deps, clock, newcomer.account_id, 2)
    order = [(await _claim_one(deps, clock)) for _ in range(5)]
    assert [c.task_id for c in order if c][1] == mine[0] and mine[1] in [c.task_id for c in order if c]


# --- the API: priority and Cancel-After --------------------------------------------------------


async def test_priority_and_deadline_are_in_the_task_object(make_deps: Callable[..., Any]) -> None:
    deps = await make_deps(run_worker=False)
    who = await new_customer(deps)
    async with serve(deps) as client:
        made = await client.post("/api/v1/tasks", headers={**who.headers, "Cancel-After": "1m30s"},
                                 json={"model": "qwen-image", "prompt": "x", "priority": "low"})
        assert made.status_code == 202, made.text
        task = made.json()
        polled = (await client.get(f"/api/v1/tasks/{task['id']}", headers=who.headers)).json()
        listed = (await client.get("/api/v1/tasks", headers=who.headers)).json()["data"][0]
    for shown in (task, polled, listed):
        assert shown["priority"] == "low"
        assert shown["started_at"] is None
        assert _at(shown["deadline_at"]) - _at(shown["created_at"]) == timedelta(seconds=90), shown


def _at(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


@pytest.mark.parametrize(("header", "problem"), [
    ("soon", "must be a duration"), ("5 minutes", "must be a duration"), ("-5s", "must be a duration"),
    ("1s", "between 5 s and 86400 s"), ("2d", "must be a duration"), ("25h", "between 5 s and 86400 s"),
    ("9" * 60, "must be a duration"),
])
async def test_a_bad_cancel_after_is_refused_naming_the_header(
    client: httpx.AsyncClient, customer: Customer, header: str, problem: str,
) -> None:
    refused = await client.post("/api/v1/tasks", headers={**customer.headers, "Cancel-After": header},
                                json={"model": "qwen-image", "prompt": "x"})
    assert refused.status_code == 422
    [detail] = refused.json()["error"]["details"]
    assert detail["field"] == "Cancel-After" and problem in detail["message"], detail


async def test_a_bad_priority_is_refused(client: httpx.AsyncClient, customer: Customer) -> None:
    refused = await create(client, customer, model="qwen-image", priority="urgent")
    assert refused.status_code == 422
    assert refused.json()["error"]["details"] == [{"field": "priority",
                                                   "message": "priority must be one of: normal, low."}]


async def test_a_queued_task_past_its_deadline_ends_canceled_once_refunded(frozen: tuple[Deps, FrozenClock]) -> None:
    deps, clock = frozen
    who = await new_customer(deps, credits=10)
    async with serve(deps) as client:
        made = (await client.post("/api/v1/tasks", headers={**who.headers, "Cancel-After": "30s"},
                                  json={"model": "qwen-image", "prompt": "x"})).json()
    clock.advance(seconds=29)
    assert await end_missed_deadlines(deps) == 0, "not yet"
    clock.advance(seconds=2)
    assert await _claim_one(deps, clock) is None, "a task past its deadline is never started"
    counts = await asyncio.gather(end_missed_deadlines(deps), end_missed_deadlines(deps))
    assert sorted(counts) == [0, 1], "two processes noticing it: exactly one ends it"
    task = await queries.get_task(deps.db.driver, who.account_id, made["id"])
    assert task.status == "canceled" and task.final_credits == 0
    assert task.error is not None and task.error["code"] == "deadline_exceeded"
    books = await audit(deps, who.account_id)
    assert books.balance == 10 and books.held == 0


async def test_a_running_task_past_its_deadline_is_stopped_and_refunded(make_deps: Callable[..., Any]) -> None:
    deps = await make_deps(sandbox_latency_ms="600000", cancel_after_min_seconds=0.1)
    who = await new_customer(deps, credits=10)
    async with serve(deps) as client:
        made = await client.post("/api/v1/tasks", headers={**who.headers, "Cancel-After": "700ms"},
                                 json={"model": "qwen-image", "prompt": "x"})
        assert made.status_code == 202, made.text
        running = await wait_for_task(client, who, made.json()["id"], until={"running"}, timeout=5)
        assert running["started_at"] is not None
        began = time.monotonic()
        ended = await wait_for_task(client, who, made.json()["id"], timeout=10)
        assert time.monotonic() - began < 5
        metrics = (await client.get("/metrics")).text
    assert ended["status"] == "canceled", ended
    assert ended["error"]["code"] == "deadline_exceeded" and ended["final_credits"] == 0
    books = await audit(deps, who.account_id)
    assert books.balance == 10 and books.held == 0
    assert 'sfumato_tasks_deadline_exceeded_total{model="qwen-image",state="running"}' in metrics


async def test_metrics_show_the_queue_by_model_and_priority(make_deps: Callable[..., Any]) -> None:
    deps = await make_deps(run_worker=False)
    who = await new_customer(deps)
    async with serve(deps) as client:
        for body in ({"model": "qwen-image", "priority": "low"}, {"model": "qwen-image"}, {"model": "qwen-image"},
                     {"model": "grok-imagine"}):
            assert (await create(client, who, **body)).status_code == 202
        text = (await client.get("/metrics")).text
    assert 'sfumato_tasks_queued{model="qwen-image",priority="low"} 1.0' in text
    assert 'sfumato_tasks_queued{model="qwen-image",priority="normal"} 2.0' in text
    assert 'sfumato_tasks_queued{model="grok-imagine",priority="normal"} 1.0' in text
    assert "sfumato_task_queue_wait_seconds_bucket" in text and "sfumato_task_run_seconds_bucket" in text


# --- several worker processes ------------------------------------------------------------------


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes({}, tmp_path)
    yield procs
    procs.stop_all()


RUN_MS = 1000


@pytest.mark.slow
async def test_two_worker_processes_serve_a_single_task_within_one_run_time(
    make_deps: Callable[..., Any], processes: Processes,
) -> None:
    """500 queued tasks of one account, two worker processes with one slot each and a 1 s
    sandbox: another account's task starts within one task's run time (plus the claim)."""
    deps = await make_deps(run_worker=False)
    big, small = await new_customer(deps, credits=4000, name="big"), await new_customer(deps, name="small")
    request = validate_task_request({"model": "qwen-image", "prompt": "x"}, deps.catalog, max_prompt_chars=100)
    for _ in range(500):
        await service.create_plain(deps.db.driver, big.account_id, request, deps.clock.now())
    processes.env.update({
        "SFUMATO_DATA_DIR": str(deps.settings.data_dir), "SFUMATO_SECRET_KEY": "test-secret",
        "SFUMATO_WORKER_CONCURRENCY": "1", "SFUMATO_SANDBOX_LATENCY_MS": str(RUN_MS),
        "SFUMATO_WORKER_POLL_SECONDS": "0.2",
        **({"SFUMATO_DATABASE_URL": str(deps.settings.database_url)} if deps.settings.database_url else {}),
    })
    for name in ("w1", "w2"):
        processes.worker(name)
    for name in ("w1", "w2"):
        wait_until(lambda name=name: "worker started" in processes.log_text(name), 30, processes.log_text(name))

    async def running() -> int:
        async with deps.db.read() as session:
            from sqlalchemy import func, select

            from sfumato.db.models import Task
            return await session.scalar(select(func.count()).select_from(Task).where(Task.status == "running")) or 0

    deadline = time.monotonic() + 30
    while await running() < 2:  # both workers busy with the big account
        assert time.monotonic() < deadline, processes.log_text("w1") + processes.log_text("w2")
        await asyncio.sleep(0.05)
    single = await service.create_plain(deps.db.driver, small.account_id, request, deps.clock.now())
    while (task := await queries.get_task(deps.db.driver, small.account_id, single.id)).started_at is None:
        assert time.monotonic() < deadline + 10, "the single task never started"
        await asyncio.sleep(0.02)
    waited = (task.started_at - task.created_at).total_seconds()
    # One run time, plus what a loaded 2-core machine adds to a claim (the old oldest-first claim
    # made it wait for all 500: 250 s).
    assert waited <= RUN_MS / 1000 + 0.5, f"waited {waited:.2f} s behind the big account"
