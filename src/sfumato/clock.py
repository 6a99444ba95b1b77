"""Time, injected so tests can move it. Values are UTC and truncated to milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


def truncate_ms(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def iso_ms(moment: datetime) -> str:
    """``2026-05-11T00:00:00.000Z``: the spec's timestamp format."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return truncate_ms(datetime.now(UTC))


class FrozenClock:
    """A clock for tests: stands still until moved."""

    def __init__(self, start: datetime | None = None):
        self._now = truncate_ms(start or datetime.now(UTC))

    def now(self) -> datetime:
        return self._now

    def advance(self, **kwargs: float) -> None:
        self._now = truncate_ms(self._now + timedelta(**kwargs))
