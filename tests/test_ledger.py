"""The money promises (spec §7, reliability §2): no oversell under a burst of creates, nothing
written for a refused create, settle on success and release on failure, exactly one ending per
task when enders race, and books that balance after every step of a random run."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from sqlalchemy import select

from sfumato.billing import ledger
from sfumato.catalog import validate_task_request
from sfumato.clock import FrozenClock
from sfumato.db.models import Task
from sfumato.deps import Deps
from sfumato.errors import IdempotencyConflict, InsufficientCredits, TaskNotCancelable
from sfumato.tasks import lifecycle, service
from sfumato.tasks.status import Status
from sfumato.worker import lease
from sfumato.worker.recovery import recover_expired_leases
from tests.conftest import new_customer, serve
from tests.helpers import claimed_tasks, together, wait_for_task
from tests.money import audit, row_counts

# --- creation: no oversell, nothing written on refusal -----------------------------------------


@pytest.mark.parametrize(
    ("model", "price", "affordable", "attempts"),
    [("qwen-image", 4, 25, 100), ("google-imagen4", 8, 10, 50)],
    ids=["4N-creates-for-N", "new-api-repro"],
)
async def test_a_burst_of_creates_accepts_exactly_what_the_balance_covers(
    make_deps, model: str, price: int, affordable: int, attempts: int
) -> None:
    deps = await make_deps(run_worker=False)
    who = await new_customer(deps, credits=price * affordable)
    async with serve(deps) as client:
        responses = await together(*[
            lambda: client.post("/api/v1/tasks", json={"model": model, "prompt": "race"}, headers=who.headers)
        ] * attempts)
    assert Counter(r.status_code for r in responses) == {202: affordable, 402: attempts - affordable}
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 402} == {"insufficient_credits"}
    accepted = {r.json()["id"] for r in responses if r.status_code == 202}
    assert len(accepted) == affordable
    books = await audit(deps, who.account_id)
    assert books.balance == 0 and books.held == price * affordable
    assert books.kinds == Counter(grant=1, reserve=affordable)
    assert books.statuses == Counter(queued=affordable)


async def test_a_rich_account_still_reserves_for_every_task(make_deps) -> None:
    """No "trusted" shortcut (one-api's helper.go): a huge balance still reserves per task."""
    deps = await make_deps(run_worker=False)
    who = await new_customer(deps, credits=4 * 10_000)
    async with serve(deps) as client:
        responses = await together(*[
            lambda: client.post("/api/v1/tasks", json={"model": "qwen-image", "prompt": "x"}, headers=who.headers)
        ] * 40)
    assert Counter(r.status_code for r in responses) == {202: 40}
    books = await audit(deps, who.account_id)
    assert books.kinds["reserve"] == 40 and books.balance == 4 * 10_000 - 4 * 40


async def test_a_refused_create_writes_nothing(make_deps) -> None:
    deps = await make_deps(run_worker=False)
    who = await new_customer(deps, credits=7)
    before = await row_counts(deps)
    async with serve(deps) as client:
        refused = await client.post(
            "/api/v1/tasks", headers=who.headers,
            json={"model": "google-imagen4", "prompt": "x", "client_request_id": "poor-1"},
        )
    assert refused.status_code == 402
    assert refused.json()["error"]["code"] == "insufficient_credits"
    assert await row_counts(deps) == before
    books = await audit(deps, who.account_id)
    assert (books.balance, books.kinds) == (7, Counter(grant=1))


# --- endings: settle on success, release on failure ---------------------------------------------


async def test_success_charges_the_price_once(make_deps) -> None:
    deps = await make_deps()
    who = await new_customer(deps, credits=20)
    async with serve(deps) as client:
        created = await client.post("/api/v1/tasks", json={"model": "google-imagen4", "prompt": "x"},
                                    headers=who.headers)
        done = await wait_for_task(client, who, created.json()["id"])
    assert (done["status"], done["reserved_credits"], done["final_credits"]) == ("succeeded", 8, 8)
    books = await audit(deps, who.account_id)
    assert (books.balance, books.spent, books.held) == (12, 8, 0)
    assert books.kinds == Counter(grant=1, reserve=1, settle=1)


async def test_failure_gives_the_reservation_back(make_deps) -> None:
    deps = await make_deps(sandbox_failure_rate=1.0)
    who = await new_customer(deps, credits=20)
    async with serve(deps) as client:
        created = await client.post("/api/v1/tasks", json={"model": "qwen-image", "prompt": "x"},
                                    headers=who.headers)
        failed = await wait_for_task(client, who, created.json()["id"])
    assert (failed["status"], failed["final_credits"], failed["result"]) == ("failed", 0, None)
    assert failed["error"]["code"] == "sandbox_failure" and failed["error"]["message"]
    books = await audit(deps, who.account_id)
    assert (books.balance, books.spent, books.held) == (20, 0, 0)
    assert books.kinds == Counter(grant=1, reserve=1, release=1)


@pytest.mark.parametrize(("charged", "final", "released"), [(3, 3, 1), (0, 0, 4), (9, 4, 0), (-2, 0, 4)])
async def test_a_charge_is_capped_at_the_reservation_and_the_rest_released(
    make_deps, charged: int, final: int, released: int
) -> None:
    """Charging less than reserved releases the difference in the same transaction; more than
    reserved is capped (never a second debit), and a negative charge charges nothing."""
    deps = await make_deps(run_worker=False)
    who = await new_customer(deps, credits=10)
    [claim] = await claimed_tasks(deps, who.account_id, 1)
    async with deps.db.write() as session:
        assert await lifecycle.succeed(session, claim.task_id, lease_token=claim.lease_token,
                                       result={"media": []}, charged=charged, now=deps.clock.now())
    async with deps.db.read() as session:
        task = await session.get(Task, claim.task_id)
    assert task is not None and (task.status, task.final_credits) == ("succeeded", final)
    books = await audit(deps, who.account_id)
    assert books.balance == 10 - final
    assert books.kinds == Counter(grant=1, reserve=1, settle=1, **({"release": 1} if released else {}))


# --- exactly-once endings under a race ----------------------------------------------------------


async def _end(deps: Deps, kind: str, claim: lease.Claim) -> bool:
    """One ender, in its own transaction: the worker's success or failure, a client's cancel."""
    async with deps.db.write() as session:
        now = deps.clock.now()
        if kind == "succeed":
            return await lifecycle.succeed(session, claim.task_id, lease_token=claim.lease_token,
                                           result={"media": []}, charged=claim.reserved_credits, now=now)
        if kind == "fail":
            return await lifecycle.fail(session, claim.task_id, code="upstream_error", message="x", now=now,
                                        lease_token=claim.lease_token)
        return await lifecycle.cancel(session, claim.task_id, now=now, source=(Status.RUNNING,))


ENDERS = ("succeed", "fail", "cancel", "succeed")
ENDS_IN = {"succeed": "succeeded", "fail": "failed", "cancel": "canceled"}


async def test_racing_enders_end_each_task_exactly_once(make_deps) -> None:
    deps = await make_deps(run_worker=False)
    who = await new_customer(deps, credits=1000)
    claims = await claimed_tasks(deps, who.account_id, 20)
    assert len(claims) == 20
    calls: list[Callable[[], Awaitable[bool]]] = [
        lambda kind=kind, claim=claim: _end(deps, kind, claim) for claim in claims for kind in ENDERS
    ]
    results = await together(*calls)
    async with deps.db.read() as session:
        tasks = {t.id: t for t in await session.scalars(select(Task).where(Task.account_id == who.account_id))}
    for n, claim in enumerate(claims):
        wins = results[n * len(ENDERS):(n + 1) * len(ENDERS)]
        assert sum(wins) == 1, (claim.task_id, wins)
        winner = ENDERS[wins.index(True)]
        assert tasks[claim.task_id].status == ENDS_IN[winner]
    books = await audit(deps, who.account_id)  # one settle xor one release per task, checked there
    assert books.held == 0
    assert books.kinds["settle"] + books.kinds["release"] == 20
    assert books.balance == 1000 - 4 * books.statuses["succeeded"]


# --- the books balance after every step of a random run ----------------------------------------


@dataclass
class Soak:
    """A random run against one account. Ops are drawn in small batches that run concurrently;
    the books are audited after each batch."""

    deps: Deps
    clock: FrozenClock
    account_id: str
    rng: random.Random
    granted: int
    tokens: dict[str, set[str]] = field(default_factory=dict)
    """Every lease token each task was ever claimed with (for stale-worker attempts)."""
    tasks: list[tuple[str, str, str | None, int]] = field(default_factory=list)
    """Snapshot at the start of a batch: ``(id, status, lease_token, reserved)``."""

    async def snapshot(self) -> None:
        async with self.deps.db.read() as session:
            rows = await session.execute(
                select(Task.id, Task.status, Task.lease_token, Task.reserved_credits)
                .where(Task.account_id == self.account_id).order_by(Task.created_at, Task.id))
            self.tasks = [(r[0], r[1], r[2], r[3]) for r in rows]

    def pick(self, status: str) -> tuple[str, str | None, int] | None:
        candidates = [(i, tok, res) for i, s, tok, res in self.tasks if s == status]
        return self.rng.choice(candidates) if candidates else None

    async def grant(self) -> None:
        credits = self.rng.randint(1, 12)
        async with self.deps.db.write() as session:
            await ledger.grant(session, self.account_id, credits, self.clock.now())
        self.granted += credits

    async def create(self) -> None:
        body = {"model": self.rng.choice(["qwen-image", "google-imagen4"]), "prompt": "soak"}
        if self.rng.random() < 0.3:  # a few reused ids: replays and conflicts take part too
            body["client_request_id"] = f"k{self.rng.randint(1, 5)}"
        request = validate_task_request(body, self.deps.catalog, max_prompt_chars=100)
        try:
            async with self.deps.db.write() as session:
                await service.create_task(session, self.account_id, request, self.clock.now(),
                                          idempotency_window=self.deps.idempotency_window)
        except (InsufficientCredits, IdempotencyConflict):
            pass

    async def claim(self) -> None:
        async with self.deps.db.write() as session:
            claims = await lease.claim(session, self.rng.randint(1, 3), self.clock.now(), self.deps.lease)
        for claim in claims:
            self.tokens.setdefault(claim.task_id, set()).add(claim.lease_token)

    async def succeed(self) -> None:
        if (target := self.pick("running")) is not None:
            task_id, token, reserved = target
            async with self.deps.db.write() as session:
                await lifecycle.succeed(session, task_id, lease_token=token or "", result={"media": []},
                                        charged=self.rng.randint(-1, reserved + 2), now=self.clock.now())

    def token_or_none(self, token: str | None) -> str | None:
        """The worker ends a task with its token; a sweeper or a client without one."""
        return token if self.rng.random() < 0.5 else None

    async def fail(self) -> None:
        if (target := self.pick("running")) is not None:
            async with self.deps.db.write() as session:
                await lifecycle.fail(session, target[0], code="upstream_error", message="x",
                                     now=self.clock.now(), lease_token=self.token_or_none(target[1]))

    async def cancel_queued(self) -> None:
        if (target := self.pick("queued")) is not None:
            try:
                async with self.deps.db.write() as session:
                    await service.cancel_task(session, self.account_id, target[0], self.clock.now(),
                                              running_cancelable=True)
            except TaskNotCancelable:
                pass  # it ended meanwhile

    async def cancel_running(self) -> None:
        if (target := self.pick("running")) is not None:
            async with self.deps.db.write() as session:
                await lifecycle.cancel(session, target[0], now=self.clock.now(), source=(Status.RUNNING,),
                                       lease_token=self.token_or_none(target[1]))

    async def expire_leases(self) -> None:
        self.clock.advance(seconds=self.deps.settings.lease_seconds + 1)
        await recover_expired_leases(self.deps)

    async def stale_worker(self) -> None:
        """A worker whose lease was taken over tries to finish: it must change nothing."""
        stale = [(i, old) for i, _, tok, _ in self.tasks for old in self.tokens.get(i, ()) if old != tok]
        if stale:
            task_id, token = self.rng.choice(stale)
            async with self.deps.db.write() as session:
                assert not await lifecycle.succeed(session, task_id, lease_token=token, result={"media": []},
                                                   charged=1, now=self.clock.now())
                assert not await lifecycle.fail(session, task_id, code="x", message="x", now=self.clock.now(),
                                                lease_token=token)


OPS = {
    "grant": 1, "create": 6, "claim": 4, "succeed": 3, "fail": 2, "cancel_queued": 2, "cancel_running": 2,
    "expire_leases": 1, "stale_worker": 1,
}


async def test_the_books_balance_after_every_step_of_a_random_run(make_deps) -> None:
    clock = FrozenClock()
    deps = await make_deps(run_worker=False, clock=clock, lease_seconds=30, max_attempts=2)
    who = await new_customer(deps, credits=40)
    soak = Soak(deps, clock, who.account_id, random.Random(20260511), granted=40)
    names, weights = list(OPS), list(OPS.values())
    seen: Counter[str] = Counter()
    for _ in range(120):
        await soak.snapshot()
        batch = soak.rng.choices(names, weights, k=soak.rng.randint(1, 4))
        seen.update(batch)
        await asyncio.gather(*(getattr(soak, name)() for name in batch))
        books = await audit(deps, who.account_id)
        assert books.granted == soak.granted
    books = await audit(deps, who.account_id)
    assert set(seen) == set(OPS)
    # The run reached every state, so the audit checked every shape of the books.
    assert {"succeeded", "failed", "canceled"} <= set(books.statuses), books.statuses
    assert books.kinds["release"] > 0 and books.kinds["settle"] > 0
