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

from sfumato.deps import Deps
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
