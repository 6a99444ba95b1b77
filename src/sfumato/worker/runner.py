"""Runs one claimed task: provider call under a heartbeat lease, outputs stored, task ended.

Every ending is a guarded transition plus its ledger entry (``tasks.lifecycle``). Outputs are
written before the finishing transaction; if that transaction loses (the lease was lost or the
task was canceled meanwhile) the written bytes are removed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
from sqlalchemy import select, update
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
)
from sqlalchemy.ext.asyncio import AsyncSession

from sfumato import metrics
from sfumato.catalog.options import OPTIONS_KEY, RequestOptions
from sfumato.db.database import mark_changed
from sfumato.db.models import StoredFile, Task
from sfumato.deps import Deps
from sfumato.files.outputs import media_entry, write_outputs, write_preview
from sfumato.providers.base import Job, OutputImage, Outputs, ProviderError, Reference
from sfumato.tasks import lifecycle, queries
from sfumato.tasks.status import Status
from sfumato.worker import lease
from sfumato.worker.lease import Claim

log = logging.getLogger("sfumato.worker")


async def _references(deps: Deps, claim: Claim) -> tuple[Reference, ...]:
    if not claim.reference_file_ids:
        return ()
    async with deps.db.read() as session:
        rows = {f.id: f for f in await session.scalars(
            select(StoredFile).where(StoredFile.id.in_(claim.reference_file_ids))
        )}
    refs = []
    for file_id in claim.reference_file_ids:
        stored = rows[file_id]
        key = stored.storage_key
        refs.append(Reference(
            file_id=file_id, kind=stored.kind, mime_type=stored.mime_type, name=stored.name,
            width=stored.width, height=stored.height,
            load=lambda key=key: deps.storage.get(key),  # type: ignore[misc]
        ))
    return tuple(refs)


@dataclass(frozen=True, slots=True)
class Ended:
    """How this run ended the task, as it wrote it: enough for a caller waiting on the run to
    answer without reading the task or its files back (``images``: file id → the bytes stored)."""

    status: Status
    final_credits: int
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    images: dict[str, bytes] | None = None


class TaskRun:
    """One claimed task in flight. ``stop(reason)`` ends its provider call early: ``"cancel"``
    (the client asked; the task ends canceled and refunded), ``"deadline"`` (its ``Cancel-After``
    passed; canceled with ``deadline_exceeded``, refunded) or ``"lease_lost"`` (someone else
    owns the task now; this run writes nothing more)."""

    def __init__(self, deps: Deps, claim: Claim):
        self.deps = deps
        self.claim = claim
        self.stop_reason: str | None = None
        self._work: asyncio.Task[Outputs] | None = None
        self.ended: Ended | None = None
        """Set when this run's finishing write won (succeeded or failed); ``None`` if the task was
        canceled, ended elsewhere, or handed back: then only the database knows how it ended."""
        self.finished = asyncio.Event()
        self._began = time.perf_counter()

    def stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        if self._work is not None:
            self._work.cancel()

    async def _heartbeat(self, *, first: bool = False) -> None:
        """Renew the lease every third of its length (``first``: the first third has passed
        already). A renewal that fails (the database is briefly away) is retried at the next
        beat; once the lease has surely run out, the task may belong to another worker, so this
        run stops and writes nothing more."""
        deps, claim = self.deps, self.claim
        loop = asyncio.get_running_loop()
        renewed = loop.time() - (deps.settings.lease_seconds / 3 if first else 0)
        while True:
            if not first:
                await asyncio.sleep(deps.settings.lease_seconds / 3)
            first = False
            try:
                async with deps.db.write() as session:
                    cancel = await lease.renew(session, claim.task_id, claim.lease_token, deps.clock.now(), deps.lease)
            except Exception as exc:
                if loop.time() - renewed >= deps.settings.lease_seconds:
                    self.stop("lease_lost")
                    return
                log.warning("lease renewal of %s failed (%s); retrying", claim.task_id, exc.__class__.__name__)
                continue
            renewed = loop.time()
            if cancel is None or cancel:
                self.stop("lease_lost" if cancel is None else "cancel")
                return

    async def _checkpoint(self, state: dict[str, Any]) -> None:
        """Keep an asynchronous upstream's request handle with the task (only while this run holds
        the lease), so that a worker taking the task over after a crash polls that request instead
        of paying for a second one. Best effort: if the database is away, the cost of losing the
        handle is one more upstream submit after a crash, so the run goes on."""
        try:
            async with self.deps.db.write() as session:
                await session.execute(update(Task).where(
                    Task.id == self.claim.task_id, Task.lease_token == self.claim.lease_token,
                ).values(upstream_state=state))
        except Exception as exc:
            log.warning("could not keep the upstream handle of %s (%s)", self.claim.task_id, exc.__class__.__name__)

    async def _preview(self, index: int, image: OutputImage) -> None:
        """Keep one partial image and tell the task's watchers (``partial`` task events), only
        while this run holds the lease. Best effort: a lost preview costs the client a picture
        in between, never the task, so a failure here is logged and the run goes on."""
        deps, claim = self.deps, self.claim
        if self.stop_reason is not None:
            return
        now = deps.clock.now()
        retention = timedelta(hours=deps.settings.output_retention_hours)
        kept = False
        try:
            stored = await write_preview(deps.storage, claim.account_id, claim.task_id, index, image, now, retention)
        except Exception as exc:
            log.warning("could not keep a preview of %s (%s)", claim.task_id, exc.__class__.__name__)
            return
        try:
            async with deps.db.write() as session:
                owned = await session.execute(update(Task).where(
                    Task.id == claim.task_id, Task.lease_token == claim.lease_token,
                    Task.status == Status.RUNNING.value).values(updated_at=now))
                kept = owned.rowcount == 1  # type: ignore[attr-defined]
                if kept:
                    session.add(stored)
                    mark_changed(session, claim.task_id)
        except Exception as exc:
            log.warning("could not keep a preview of %s (%s)", claim.task_id, exc.__class__.__name__)
        finally:
            if not kept:
                await deps.storage.delete(stored.storage_key)

    async def _call_provider(self) -> Outputs:
        deps, claim = self.deps, self.claim
        model = deps.catalog.get(claim.model)
        if model is None:
            raise ProviderError("model_unavailable", f"The model {claim.model} is no longer served.")
        params = {k: v for k, v in claim.params.items() if isinstance(v, str)}
        options = RequestOptions.from_stored(claim.params.get(OPTIONS_KEY))
        job = Job(claim.task_id, model, claim.prompt, params, await _references(deps, claim),
                  request_id=claim.request_id or "", resume=claim.upstream_state, checkpoint=self._checkpoint,
                  options=options, partial_images=options.previews_for(model), on_partial=self._preview)
        provider = deps.providers.for_model(claim.model)
        self._work = asyncio.create_task(provider.run(job))
        loop = asyncio.get_running_loop()
        deadline = None
        if claim.deadline_at is not None:
            left = (claim.deadline_at - deps.clock.now()).total_seconds()
            deadline = loop.call_later(max(0.0, left), self.stop, "deadline")
        if self.stop_reason is not None:
            self._work.cancel()
        # The heartbeat task starts at the first beat: most calls end before it (a task and its
        # cancellation per call cost more than a timer).
        beats: list[asyncio.Task[None]] = []
        first = loop.call_later(
            deps.settings.lease_seconds / 3, lambda: beats.append(asyncio.create_task(self._heartbeat(first=True))))
        started = time.perf_counter()
        try:
            async with asyncio.timeout(deps.settings.task_timeout_seconds):
                return await self._work
        except ProviderError as exc:
            metrics.PROVIDER_ERRORS.labels(provider.name, claim.model, exc.code).inc()
            raise
        finally:
            metrics.PROVIDER_LATENCY.labels(provider.name, claim.model).observe(time.perf_counter() - started)
            first.cancel()
            if deadline is not None:
                deadline.cancel()
            for beat in beats:
                beat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await beat

    async def execute(self) -> None:
        try:
            outputs = await self._call_provider()
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if (current is not None and current.cancelling()) or self.stop_reason is None:
                raise  # the worker itself is stopping: it hands the task back
            if self.stop_reason in ("cancel", "deadline"):
                error = lifecycle.DEADLINE_EXCEEDED if self.stop_reason == "deadline" else None
                if await self._end(Status.CANCELED, lambda s: lifecycle.cancel(
                        s, self.claim.task_id, now=self.deps.clock.now(), source=(Status.RUNNING,),
                        lease_token=self.claim.lease_token, error=error)) and error is not None:
                    metrics.DEADLINES.labels(self.claim.model, "running").inc()
            else:
                log.warning("lost the lease on %s; another worker owns it now", self.claim.task_id)
            return
        except TimeoutError:
            limit = self.deps.settings.task_timeout_seconds
            await self._fail("timeout", f"The task did not finish within {limit:g} s.")
            return
        except ProviderError as exc:
            await self._fail(exc.code, exc.message)
            return
        except Exception:
            log.exception("task %s failed unexpectedly", self.claim.task_id)
            await self._fail("internal_error", "The task failed inside sfumato; its credits were refunded.")
            return
        await self._succeed(outputs)

    async def _fail(self, code: str, message: str) -> None:
        if await self._end(Status.FAILED, lambda s: lifecycle.fail(
                s, self.claim.task_id, code=code, message=message, now=self.deps.clock.now(),
                lease_token=self.claim.lease_token)):
            self.ended = Ended(Status.FAILED, 0, error={"code": code, "message": message})

    async def _commit(self, finish: Callable[[AsyncSession], Awaitable[bool]]) -> bool:
        """Run a finishing transaction on the ORM (see :meth:`_retried`)."""
        async def attempt() -> bool:
            async with self.deps.db.write() as session:
                return await finish(session)

        return await self._retried(attempt)

    async def _retried(self, attempt: Callable[[], Awaitable[bool]]) -> bool:
        """Run a finishing transaction, retried while the database is unreachable (for up to one
        lease): the provider's work is done and paid for, and redoing it because the database
        blinked would cost another upstream call. The lease token still guards the write."""
        loop = asyncio.get_running_loop()
        deadline, delay = loop.time() + self.deps.settings.lease_seconds, 0.2
        while True:
            try:
                return await attempt()
            except TRANSIENT as exc:
                if isinstance(exc, DBAPIError) and not _transient_dbapi(exc):
                    raise
                if loop.time() + delay > deadline:
                    raise
                log.warning("finishing %s failed (%s); retrying", self.claim.task_id, exc.__class__.__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _end(self, status: Status, finish: Callable[[AsyncSession], Awaitable[bool]]) -> bool:
        won = await self._commit(finish)
        if won:
            metrics.task_ended(self.claim.model, status, self.claim.reserved_credits, 0)
            metrics.RUN_TIME.labels(self.claim.model, status.value).observe(time.perf_counter() - self._began)
        else:
            log.info("task %s was ended elsewhere first", self.claim.task_id)
        return won

    async def _succeed(self, outputs: Outputs) -> None:
        deps, claim = self.deps, self.claim
        if not outputs.images:
            await self._fail("empty_output", "The provider returned no image.")
            return
        retention = timedelta(hours=deps.settings.output_retention_hours)
        files = await write_outputs(
            deps.storage, claim.account_id, claim.task_id, outputs.images, deps.clock.now(), retention
        )
        result = {
            "media": [media_entry(f) for f in files],
            "provider": outputs.provider,
            "sandbox": outputs.sandbox,
            **({"info": outputs.info} if outputs.info else {}),
        }
        rows = [{c.key: getattr(f, c.key) for c in StoredFile.__mapper__.column_attrs} for f in files]

        async def finish() -> bool:  # the driver's one transaction (tasks/queries.py)
            await queries.succeed(deps.db.driver, claim.task_id, lease_token=claim.lease_token, result=result,
                                  charged=claim.reserved_credits, files=rows, now=deps.clock.now())
            deps.db.announce({claim.task_id})
            return True

        won = False
        try:
            won = await self._retried(finish)
            metrics.task_ended(claim.model, Status.SUCCEEDED, claim.reserved_credits, claim.reserved_credits)
            metrics.RUN_TIME.labels(claim.model, Status.SUCCEEDED.value).observe(time.perf_counter() - self._began)
            self.ended = Ended(Status.SUCCEEDED, claim.reserved_credits, result=result,
                               images={f.id: image.data for f, image in zip(files, outputs.images, strict=True)})
        except queries.LeaseLost:
            log.info("task %s was ended elsewhere first; discarding its outputs", claim.task_id)
        finally:
            if not won:
                for stored in files:
                    await deps.storage.delete(stored.storage_key)


TRANSIENT = (OperationalError, InterfaceError, DBAPIError, ConnectionError, TimeoutError,
             asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError, asyncpg.InterfaceError,
             asyncpg.OperatorInterventionError, sqlite3.OperationalError)
"""What a finishing write is retried on. The driver's errors come unwrapped: a PostgreSQL that
is shutting down answers ``AdminShutdownError`` (an operator intervention), a dropped socket
``ConnectionDoesNotExistError`` (an interface error), a busy SQLite file ``OperationalError``."""


def _transient_dbapi(exc: DBAPIError) -> bool:
    """Anything but the statement's own fault: connection loss surfaces in many wrappers (a
    shutting-down PostgreSQL gives a plain DBAPIError around CannotConnectNowError)."""
    return not isinstance(exc, IntegrityError | DataError | ProgrammingError | NotSupportedError)

