"""In-process signals: "a task was queued" and "cancel this task" (API → worker), and "these
tasks changed" (whoever commits a change → whoever watches the task: event streams, waits).

Signals are sent only after the transaction that made the change committed. They make the
worker react in milliseconds; the worker's polling and lease heartbeats remain the guarantee
(and the only channel between separate processes until a shared notifier is configured).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Iterator


class Signals:
    def __init__(self) -> None:
        self._wakeup = asyncio.Event()
        self._cancel_handlers: list[Callable[[str], None]] = []
        self._watchers: dict[str, set[asyncio.Event]] = {}

    def tasks_changed(self, task_ids: Iterable[str]) -> None:
        """These tasks changed state (committed): wake whoever watches them."""
        for task_id in task_ids:
            for event in self._watchers.get(task_id, ()):
                event.set()

    def wake_watchers(self) -> None:
        for events in self._watchers.values():
            for event in events:
                event.set()

    @contextlib.contextmanager
    def watching(self, task_id: str) -> Iterator[asyncio.Event]:
        """An event set when ``task_id`` changes; the watcher clears it after each look."""
        event = asyncio.Event()
        self._watchers.setdefault(task_id, set()).add(event)
        try:
            yield event
        finally:
            watchers = self._watchers.get(task_id, set())
            watchers.discard(event)
            if not watchers:
                self._watchers.pop(task_id, None)

    def task_queued(self) -> None:
        self._wakeup.set()

    def cancel_requested(self, task_id: str) -> None:
        for handler in self._cancel_handlers:
            handler(task_id)

    def on_cancel(self, handler: Callable[[str], None]) -> None:
        self._cancel_handlers.append(handler)

    async def wait(self, at_most: float) -> None:
        """Return when woken or after ``at_most`` seconds, and re-arm."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), at_most)
        self._wakeup.clear()
