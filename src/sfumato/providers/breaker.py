"""A circuit breaker per route: after ``failures`` consecutive failed attempts the route is
skipped for ``reset_seconds``; then one trial request is let through (half-open) and its outcome
closes or re-opens the circuit.

A small class rather than a library (docs/providers.md says why): the state lives in one
process, the clock is injected so tests never wait, and the router decides what a failure is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(self, failures: int = 5, reset_seconds: float = 30.0,
                 clock: Callable[[], float] = time.monotonic):
        self.threshold = failures
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._state = State.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_out = False

    @property
    def state(self) -> State:
        """The state as a caller would find it now (an expired open circuit reads half-open)."""
        if self._state is State.OPEN and self._clock() - self._opened_at >= self.reset_seconds:
            return State.HALF_OPEN
        return self._state

    def allow(self) -> bool:
        """May a request go to this route now? In half-open, only one trial at a time."""
        state = self.state
        if state is State.CLOSED:
            return True
        if state is State.OPEN or self._trial_out:
            return False
        self._state, self._trial_out = State.HALF_OPEN, True
        return True

    def success(self) -> None:
        self._state, self._failures, self._trial_out = State.CLOSED, 0, False

    def failure(self) -> None:
        self._failures += 1
        if self._state is State.HALF_OPEN or self._failures >= self.threshold:
            self._state, self._opened_at, self._trial_out = State.OPEN, self._clock(), False

    def release(self) -> None:
        """The request ended with no verdict (canceled): free the half-open trial slot."""
        self._trial_out = False
