"""How long to wait between polls, shared by both clients (events first, polls as fallback)."""

from __future__ import annotations

from dataclasses import dataclass

EVENTS_PATH = "/api/v1/tasks/{id}/events"
NO_EVENTS = (404, 405, 501)
"""Answers meaning the server has no event stream (an older server): poll instead."""


@dataclass
class PollSchedule:
    """0.25 s at first, growing by half up to 2 s: quick for fast models, light for slow ones."""

    delay: float = 0.25
    ceiling: float = 2.0

    def next(self) -> float:
        current = self.delay
        self.delay = min(self.ceiling, self.delay * 1.5)
        return current
