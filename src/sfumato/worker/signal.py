"""In-process signals from the API to the worker: "a task was queued" and "cancel this task".

Signals are sent only after the transaction that made the change committed. They make the
worker react in milliseconds; the worker's polling and lease heartbeats remain the guarantee
(and the only channel between separate processes until a shared notifier is configured).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable


class Signals:
    def __init__(self) -> None:
        self._wakeup = asyncio.Event()
        self._cancel_handlers: list[Callable[[str], None]] = []

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
