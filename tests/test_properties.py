"""Property tests (hypothesis).

1. Random params against each catalog model are either accepted with the defaults applied or
   refused with one detail per bad field, and never anything else.
2. Random sequences of create (with or without a ``Cancel-After`` deadline, normal or low
   priority) / cancel / claim / succeed / fail / worker cancel / crash and recover / grant /
   deadline passes, on the real database, keep every promise of the books after every step:
   ``balance == ledger sum``, ``balance >= 0``, every task's ``final_credits <= reserved_credits``
   and every task's ledger entries matching its state (``tests.money.audit``).

The state machine runs in a thread (hypothesis drives it synchronously) and hands each step's
coroutine to the test's own event loop, where the database engine lives.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from dataclasses import replace
from datetime import timedelta
from typing import Any, TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from sqlalchemy import func, select

from sfumato.billing import ledger
from sfumato.catalog import load_catalog, validate_task_request
from sfumato.catalog.spec import ModelSpec, ParamSpec
from sfumato.clock import FrozenClock
from sfumato.db.models import Task
from sfumato.deps import Deps
from sfumato.errors import InsufficientCredits, TaskNotCancelable, ValidationFailed
from sfumato.tasks import lifecycle, service
from sfumato.tasks.status import Status
from sfumato.worker import lease
from sfumato.worker.recovery import end_missed_deadlines, recover_expired_leases
from tests.conftest import new_customer
from tests.money import audit

CATALOG = load_catalog()
T = TypeVar("T")

# --- 1. params ----------------------------------------------------------------------------------

JSONISH = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=12),
                    st.lists(st.integers(), max_size=2),
                    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


def _value_for(spec: ParamSpec) -> st.SearchStrategy[Any]:
    good = st.sampled_from(spec.options) if spec.options else st.one_of(
        st.just(""), st.integers(-10**12, 10**12).map(str), st.text(max_size=40))
    return st.one_of(good, good, JSONISH)  # mostly plausible values, sometimes anything


@st.composite
def requests(draw: st.DrawFn) -> tuple[ModelSpec, dict[str, Any]]:
    model = draw(st.sampled_from(list(CATALOG)))
    params: dict[str, Any] = {}
    for spec in model.params:
        if draw(st.booleans()):
            params[spec.key] = draw(_value_for(spec))
    params.update(draw(st.dictionaries(st.text(min_size=1, max_size=8), JSONISH, max_size=2)))
    return model, params


def _is_bad(spec: ParamSpec, value: Any) -> bool | None:
    """Whether the validator must refuse ``value`` (``None``: free text it may judge either way)."""
    if not isinstance(value, str):
        return True
    if spec.type == "select":
        return value not in (spec.options or ())
    return None if value else False


@settings(max_examples=400, deadline=None)
@given(requests())
def test_random_params_are_accepted_with_defaults_or_refused_per_field(
    request: tuple[ModelSpec, dict[str, Any]],
) -> None:
    model, params = request
    body = {"model": model.id, "prompt": "a red fox in fresh snow", "params": params}
    known = {p.key: p for p in model.params}
    unknown = {k for k in params if k not in known and k != "referenceMediaItems"}
    must_fail = {k for k, v in params.items() if k in known and _is_bad(known[k], v)} | unknown
    try:
        accepted = validate_task_request(body, CATALOG, max_prompt_chars=32000)
    except ValidationFailed as exc:
        fields = [d.field for d in exc.details]
        assert fields, "a refusal names at least one field"
        assert len(fields) == len(set(fields)), f"one detail per bad field: {fields}"
        assert {f"params.{k}" for k in must_fail} <= set(fields), (must_fail, fields)
        assert set(fields) <= {f"params.{k}" for k in params}, fields
        return
    assert not must_fail, f"accepted {must_fail}"
    for key, spec in known.items():
        given_value = params.get(key)
        if isinstance(given_value, str) and given_value and spec.type == "select":
            assert accepted.params[key] == given_value
        elif given_value in (None, "") and spec.default is not None:
            assert accepted.params[key] == spec.default
    assert set(accepted.params) <= set(known)


# --- 2. the books under random sequences --------------------------------------------------------

LEASE_SECONDS = 30


class Books(RuleBasedStateMachine):
    """Two accounts, one worker that may hold claims, and a clock the machine moves."""

    deps: Deps
    clock: FrozenClock
    loop: asyncio.AbstractEventLoop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    @initialize()
    def accounts(self) -> None:
        self.accounts_ = [self.run(new_customer(self.deps, credits=12, name=f"p{i}")).account_id for i in range(2)]
        self.claims: list[lease.Claim] = []
        self.task_ids: list[str] = []

    @rule(who=st.integers(0, 1), model=st.sampled_from(["qwen-image", "google-imagen4", "grok-imagine"]),
          pro=st.booleans(), low=st.booleans(), cancel_after=st.one_of(st.none(), st.integers(5, 90)))
    def create(self, who: int, model: str, pro: bool, low: bool, cancel_after: int | None) -> None:
        body: dict[str, Any] = {"model": model, "prompt": "p", "priority": "low" if low else "normal"}
        if model == "grok-imagine" and pro:
            body["params"] = {"enable_pro": "true"}
        request = validate_task_request(body, self.deps.catalog, max_prompt_chars=100)
        if cancel_after is not None:
            request = replace(request, cancel_after=timedelta(seconds=cancel_after))

        async def go() -> None:
            async with self.deps.db.write() as session:
                created = await service.create_task(session, self.accounts_[who], request, self.clock.now(),
                                                    idempotency_window=self.deps.idempotency_window)
                self.task_ids.append(created.task.id)

        with contextlib.suppress(InsufficientCredits):
            self.run(go())

    @rule(who=st.integers(0, 1), credits=st.integers(1, 10))
    def grant(self, who: int, credits: int) -> None:
        async def go() -> None:
            async with self.deps.db.write() as session:
                await ledger.grant(session, self.accounts_[who], credits, self.clock.now())

        self.run(go())

    @rule(pick=st.integers(0, 50), who=st.integers(0, 1))
    def cancel(self, pick: int, who: int) -> None:
        if not self.task_ids:
            return
        task_id = self.task_ids[pick % len(self.task_ids)]

        async def go() -> None:
            async with self.deps.db.write() as session:
                await service.cancel_task(session, self.accounts_[who], task_id, self.clock.now(),
                                          running_cancelable=True)

        try:
            self.run(go())
        except TaskNotCancelable:
            pass
        except Exception as exc:  # another account's task is "not found", like a missing one
            assert exc.__class__.__name__ == "NotFound", exc

    @rule(n=st.integers(1, 3))
    def claim(self, n: int) -> None:
        async def go() -> list[lease.Claim]:
            async with self.deps.db.write() as session:
                return await lease.claim(session, n, self.clock.now(), self.deps.lease)

        claims = self.run(go())
        now = self.clock.now()
        assert all(c.deadline_at is None or c.deadline_at > now for c in claims), "started past its deadline"
        self.claims.extend(claims)

    @rule(seconds=st.integers(1, 60))
    def deadline_passes(self, seconds: int) -> None:
        """Time passes; two processes' maintenance rounds notice the queued tasks past their
        deadline at once: each such task ends canceled exactly once (the books say so)."""
        self.clock.advance(seconds=seconds)

        async def both() -> None:
            await asyncio.gather(end_missed_deadlines(self.deps), end_missed_deadlines(self.deps))

        self.run(both())

        async def overdue() -> int:
            async with self.deps.db.read() as session:
                return await session.scalar(select(func.count()).select_from(Task).where(
                    Task.status == Status.QUEUED.value, Task.deadline_at <= self.clock.now())) or 0

        assert self.run(overdue()) == 0, "a queued task outlived its deadline"

    @rule(pick=st.integers(0, 50))
    def running_deadline(self, pick: int) -> None:
        """A held claim whose deadline has passed is stopped by its run's timer: canceled with
        ``deadline_exceeded`` under its lease (refused, writing nothing, if recovery moved it)."""
        now = self.clock.now()
        due = [c for c in self.claims if c.deadline_at is not None and c.deadline_at <= now]
        if not due:
            return
        claim = due[pick % len(due)]
        self.claims.remove(claim)

        async def go() -> None:
            async with self.deps.db.write() as session:
                await lifecycle.cancel(session, claim.task_id, now=now, source=(Status.RUNNING,),
                                       lease_token=claim.lease_token, error=lifecycle.DEADLINE_EXCEEDED)

        self.run(go())

    def _finish(self, pick: int, end: Callable[[Any, lease.Claim], Coroutine[Any, Any, Any]]) -> None:
        if not self.claims:
            return
        claim = self.claims.pop(pick % len(self.claims))

        async def go() -> None:
            async with self.deps.db.write() as session:
                await end(session, claim)

        self.run(go())

    @rule(pick=st.integers(0, 50), over=st.integers(-2, 5))
    def succeed(self, pick: int, over: int) -> None:
        """``charged`` may be below zero or over the reservation: the books must cap it."""
        self._finish(pick, lambda s, c: lifecycle.succeed(
            s, c.task_id, lease_token=c.lease_token, result={"media": []}, charged=c.reserved_credits + over,
            now=self.clock.now()))

    @rule(pick=st.integers(0, 50))
    def fail(self, pick: int) -> None:
        self._finish(pick, lambda s, c: lifecycle.fail(
            s, c.task_id, code="upstream_error", message="x", now=self.clock.now(), lease_token=c.lease_token))

    @rule(pick=st.integers(0, 50))
    def worker_cancels(self, pick: int) -> None:
        self._finish(pick, lambda s, c: lifecycle.cancel(
            s, c.task_id, now=self.clock.now(), source=(Status.RUNNING,), lease_token=c.lease_token))

    @rule(forget=st.booleans())
    def crash_and_recover(self, forget: bool) -> None:
        """The worker stalls past its lease; recovery requeues or ends its tasks. With ``forget``
        the worker is dead (its claims are gone); without, it wakes up later holding stale
        claims, whose every write must now be refused."""
        self.clock.advance(seconds=LEASE_SECONDS + 1)
        self.run(recover_expired_leases(self.deps))
        if forget:
            self.claims.clear()

    @invariant()
    def books_balance(self) -> None:
        if not hasattr(self, "accounts_"):
            return
        for account_id in self.accounts_:
            self.run(audit(self.deps, account_id))


async def test_random_sequences_keep_the_books(make_deps: Callable[..., Any]) -> None:
    clock = FrozenClock()
    deps = await make_deps(run_worker=False, clock=clock, lease_seconds=LEASE_SECONDS, max_attempts=2)

    class Machine(Books):
        pass

    Machine.deps, Machine.clock, Machine.loop = deps, clock, asyncio.get_running_loop()
    config = settings(max_examples=30, stateful_step_count=25, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    await asyncio.to_thread(run_state_machine_as_test, Machine, settings=config)
