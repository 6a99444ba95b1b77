"""``Cancel-After``: a task's deadline, as Replicate's header gives it.

The value is a duration counted from the task's creation: ``30s``, ``5m``, ``1h30m``, ``1.5h``,
``500ms`` or a bare number of seconds. Not done by then, the task ends ``canceled`` with
``error.code = "deadline_exceeded"`` and is refunded, whether it was still queued or running.
"""

from __future__ import annotations

import re
from datetime import timedelta

from sfumato.errors import FieldError, ValidationFailed

HEADER = "Cancel-After"
PATTERN = r"^([0-9]+(\.[0-9]+)?|([0-9]+(\.[0-9]+)?(ms|s|m|h))+)$"
"""The header's grammar, as the OpenAPI document states it (its bounds are settings)."""
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_SECONDS = re.compile(r"\d+(?:\.\d+)?")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _seconds(text: str) -> float | None:
    if _SECONDS.fullmatch(text):
        return float(text)
    parts = list(_PART.finditer(text))
    if not parts or "".join(p.group(0) for p in parts) != text:
        return None
    return sum(float(p.group(1)) * _UNIT[p.group(2)] for p in parts)


def cancel_after(value: str | None, *, least: float, most: float) -> timedelta | None:
    """The deadline ``value`` asks for, or ``None`` when the header is absent; a value that is
    not a duration, or outside ``[least, most]`` seconds, is a 422 naming the header."""
    if value is None:
        return None
    text = value.strip().lower()
    seconds = _seconds(text) if len(text) <= 40 else None
    if seconds is None:
        raise ValidationFailed(details=[FieldError(
            HEADER, "Cancel-After must be a duration such as 30s, 5m or 1h30m (a bare number is seconds).")])
    if not least <= seconds <= most:
        raise ValidationFailed(details=[FieldError(
            HEADER, f"Cancel-After must be between {least:g} s and {most:g} s; got {seconds:g} s.")])
    return timedelta(seconds=seconds)
