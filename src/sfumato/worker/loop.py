"""The worker: claims queued tasks into free slots and runs each as an asyncio task.

A slot is a coroutine, not a thread: upstream calls are slow I/O, so one process runs many
tasks at once (``SFUMATO_WORKER_CONCURRENCY``). It claims as soon as it is signalled (in-process)
and otherwise every ``SFUMATO_WORKER_POLL_SECONDS``. On stop it claims nothing more, gives
running tasks a grace period, then hands the rest back to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime

from sfumato import logs, metrics
from sfumato.db.notify import CANCEL_REQUESTED, TASK_QUEUED, PgListener, notify
from sfumato.deps import Deps
from sfumato.tasks import lifecycle
from sfumato.tasks.status import Status
from sfumato.webhooks.dispatcher import Dispatcher
from sfumato.worker import lease
from sfumato.worker.lease import Claim
from sfumato.worker.recovery import maintain
from sfumato.worker.runner import TaskRun

log = logging.getLogger("sfumato.worker")
HELPER_GRACE_SECONDS = 5.0
"""How long a stopping worker lets its maintenance, webhook and listener rounds finish."""


class Worker:
    def __init__(self, deps: Deps, *, shutdown_grace: float = 10.0):
        self.deps = deps
        self.shutdown_grace = shutdown_grace
        self._runs: dict[str, TaskRun] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()
        self._promised = 0  # slots held for tasks being created to run at once (run_now)
        self._stopping = False
        deps.signals.on_cancel(self._cancel_signal)

    def _cancel_signal(self, task_id: str) -> None:
        run = self._runs.get(task_id)
        if run is not None:
            run.stop("cancel")

    @property
    def running(self) -> int:
        return len(self._runs)

    async def _claim_into_free_slots(self) -> tuple[int, int]:
        """``(claimed, free)``: fewer claimed than free slots means the queue was empty."""
        free = self._free()
        if free <= 0:
            return 0, 0
        settings, now = self.deps.settings, self.deps.clock.now()
        claims = await lease.claim_through(self.deps.db.driver, free, now, self.deps.lease,
                                           cap=settings.account_concurrency)
        if claims:
            self.deps.db.announce({c.task_id for c in claims})
        for claim in claims:
            if claim.created_at is not None:
                metrics.QUEUE_WAIT.labels(claim.model).observe(max(0.0, (now - claim.created_at).total_seconds()))
            self._start(claim)
        return len(claims), free

    def _free(self) -> int:
        return self.deps.settings.worker_concurrency - len(self._runs) - self._promised

    def _start(self, claim: Claim) -> TaskRun:
        run = TaskRun(self.deps, claim)
        self._runs[claim.task_id] = run
        task = asyncio.create_task(self._execute(run), name=f"task:{claim.task_id}")
        self._tasks.add(task)
        return run

    async def run_now(self, create: Callable[[tuple[str, datetime]], Awaitable[Claim]]) -> TaskRun | None:
        """Run a task that this process is creating in a free slot at once, past the queue (the
        OpenAI-compatible door waits for its image anyway): ``create(lease)`` writes it already
        claimed under ``lease`` (``(token, expires_at)``, attempt 1, in the create's own
        transaction) and returns its claim. From then on it is a claimed task like any other:
        heartbeat, finish, cancel, hand-back on stop, recovery when this process dies.

        ``None``, having called nothing, when no slot is free, the worker is stopping, or accounts
        have a concurrency cap (only the queue's claim counts an account's running tasks): the
        caller queues the task as usual. Whatever ``create`` raises (no credits) propagates."""
        if self._stopping or self._free() <= 0 or self.deps.settings.account_concurrency is not None:
            return None
        self._promised += 1
        try:
            claim = await create((secrets.token_hex(16), self.deps.clock.now() + self.deps.lease))
        finally:
            self._promised -= 1
        if claim.task_id in self._runs:  # pragma: no cover - ids are fresh
            raise RuntimeError(f"task {claim.task_id} is already running here")
        return self._start(claim)

    async def _execute(self, run: TaskRun) -> None:
        logs.request_id.set(run.claim.request_id or "")  # this asyncio task's own context
        logs.task_id.set(run.claim.task_id)
        try:
            await run.execute()
        except asyncio.CancelledError:
            await asyncio.shield(self._hand_back(run))
            raise
        except Exception:
            log.exception("worker slot crashed on %s; its lease will expire and it is retried", run.claim.task_id)
        finally:
            self._runs.pop(run.claim.task_id, None)
            run.finished.set()
            current = asyncio.current_task()
            if current is not None:
                self._tasks.discard(current)
            self._slot_freed.set()

    async def _hand_back(self, run: TaskRun) -> None:
        with contextlib.suppress(Exception):
            async with self.deps.db.write() as session:
                outcome = await lifecycle.requeue(session, run.claim.task_id, lease_token=run.claim.lease_token,
                                                  now=self.deps.clock.now())
                if outcome is Status.QUEUED:
                    await notify(session, TASK_QUEUED)  # another process's worker may take it now

    async def _maintenance(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await maintain(self.deps)
            except Exception:
                log.exception("maintenance round failed; retrying next interval")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.deps.settings.maintenance_interval_seconds)

    async def _wait_for_work(self, stop: asyncio.Event) -> None:
        waiters = [
            asyncio.create_task(self.deps.signals.wait(self.deps.settings.worker_poll_seconds)),
            asyncio.create_task(stop.wait()),
        ]
        if len(self._runs) >= self.deps.settings.worker_concurrency:
            self._slot_freed.clear()
            waiters.append(asyncio.create_task(self._slot_freed.wait()))
        _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in pending:
            waiter.cancel()

    def _listener(self) -> PgListener | None:
        if self.deps.db.is_sqlite:
            return None
        signals = self.deps.signals
        return PgListener(self.deps.db.url, {
            TASK_QUEUED: lambda _payload: signals.task_queued(),
            CANCEL_REQUESTED: lambda task_id: self._cancel_signal(task_id),
        })

    async def run(self, stop: asyncio.Event) -> None:
        upkeep = asyncio.create_task(self._maintenance(stop))
        listener = self._listener()
        listening = asyncio.create_task(listener.run(stop)) if listener else None
        dispatcher = Dispatcher(self.deps)
        webhooks = asyncio.create_task(dispatcher.run(stop))
        try:
            while not stop.is_set():
                try:
                    claimed, free = await self._claim_into_free_slots()
                except Exception:
                    log.exception("claiming failed (database unavailable?); retrying")
                    claimed, free = 0, 1
                    await asyncio.sleep(self.deps.settings.worker_poll_seconds)
                # Claim again at once only if every free slot was filled (more may be waiting).
                # Fewer means the queue was empty at the claim: wait for a signal, which a task
                # queued meanwhile has already set, or for the poll interval.
                if claimed == 0 or claimed < free:
                    await self._wait_for_work(stop)
        finally:
            self._stopping = True
            if self._tasks:
                log.info("worker stopping: %d running task(s) get %g s to finish", len(self._tasks),
                         self.shutdown_grace)
            await self._drain()
            # Each helper ends by itself once ``stop`` is set, after the round it is in; cancelling
            # one mid-transaction rolls that back and logs the connection it interrupted.
            helpers = [helper for helper in (upkeep, listening, webhooks) if helper is not None]
            _, late = await asyncio.wait(helpers, timeout=HELPER_GRACE_SECONDS)
            for helper in helpers:
                if helper in late:
                    helper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await helper
            await dispatcher.aclose()
            log.info("worker stopped")

    async def _drain(self) -> None:
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=self.shutdown_grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
            log.info("handed %d running task(s) back to the queue", len(pending))
