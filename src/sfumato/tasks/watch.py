"""Following a task as it changes: the one mechanism behind the event stream, ``Prefer: wait``
and the synchronous doors (OpenAI-compatible, image-edit API).

A watcher re-reads the task when told it changed (in process, or by NOTIFY from another
process on PostgreSQL) and at least every ``POLL_SECONDS`` anyway, so it is right even where
no notification reaches it (SQLite with a separate worker process). Each watcher holds one
``asyncio.Event`` and one short read at a time; none busy-waits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sfumato.db.models import StoredFile
from sfumato.deps import Deps
from sfumato.files.previews import previews_of
from sfumato.tasks import queries
from sfumato.tasks.queries import AnyTask
from sfumato.tasks.status import TERMINAL

POLL_SECONDS = 1.0


async def changes(deps: Deps, account_id: str, task_id: str, *, known: AnyTask | None = None
                  ) -> AsyncIterator[AnyTask]:
    """The task now, then each time its status differs from the last one yielded; ends with
    its terminal state. ``NotFound`` for another account's task, like a missing one.
    ``known``: the task as the caller just wrote it (a create), taken for the first look; only
    with no ``await`` between that write and this call, so no change can pass unwatched."""
    last: str | None = None
    with deps.signals.watching(task_id) as changed:
        while True:
            changed.clear()
            task = known or await queries.get_task(deps.db.driver, account_id, task_id)
            known = None
            if task.status != last:
                last = task.status
                yield task
            if task.status in TERMINAL:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), POLL_SECONDS)


async def until_done(deps: Deps, account_id: str, task_id: str, seconds: float, *,
                     known: AnyTask | None = None) -> AnyTask:
    """The task once it has ended, or as it is after ``seconds``."""
    latest: AnyTask | None = None
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            async for seen in changes(deps, account_id, task_id, known=known):
                latest = seen
    if latest is None:
        latest = await queries.get_task(deps.db.driver, account_id, task_id)
    return latest


@dataclass(frozen=True, slots=True)
class Seen:
    """One step of a task's story: its state, whether the status is new, and the previews
    (partial images) that came since the last step, the first of them numbered ``first_index``."""

    task: AnyTask
    status_changed: bool
    previews: list[StoredFile]
    first_index: int


async def story(deps: Deps, account_id: str, task_id: str, *, idle_seconds: float | None = None
                ) -> AsyncIterator[Seen | None]:
    """Like :func:`changes`, and also each new preview as the worker keeps it; ``None`` after
    ``idle_seconds`` with neither (a door's cue for a keep-alive). Ends with the terminal state,
    after every preview: the worker commits a preview before it ends the task."""
    last: str | None = None
    seen, quiet = 0, 0.0
    with deps.signals.watching(task_id) as changed:
        while True:
            changed.clear()
            task = await queries.get_task(deps.db.driver, account_id, task_id)
            fresh: list[StoredFile] = []
            if task.status != "queued":
                async with deps.db.read() as session:
                    fresh = (await previews_of(session, task_id))[seen:]
            if task.status != last or fresh:
                yield Seen(task, task.status != last, fresh, seen)
                last, seen, quiet = task.status, seen + len(fresh), 0.0
            elif idle_seconds is not None and quiet >= idle_seconds:
                quiet = 0.0
                yield None
            if task.status in TERMINAL:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), POLL_SECONDS)
            quiet += POLL_SECONDS
