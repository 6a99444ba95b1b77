"""Text that Python holds but a database cannot store: JSON's ``"\\ud800"`` escape parses into
a lone surrogate, which no UTF-8 column, request hash or response can carry, and ``"\\u0000"``
into a NUL, which PostgreSQL's text and JSONB refuse (SQLite would keep it: refused on both, so
both answer alike)."""

from __future__ import annotations

from typing import Any


def _storable(text: str, nul: bool = True) -> bool:
    if nul and "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _member_path(path: str, key: str) -> str:
    name = key.encode("utf-8", "backslashreplace").decode("utf-8")  # the path itself must be sendable
    return f"{path}.{name}" if path else name


def _children(path: str, value: Any) -> list[tuple[str, str | None, Any]]:
    """``(path, key, item)`` for each member of an object or array."""
    if isinstance(value, dict):
        return [(_member_path(path, str(key)), str(key), item) for key, item in value.items()]
    if isinstance(value, list):
        return [(f"{path}[{i}]", None, item) for i, item in enumerate(value)]
    return []


def unstorable_fields(body: Any, *, nul: bool = True) -> list[str]:
    """Fields whose key or text holds a lone surrogate or (unless ``nul`` is off) a NUL.

    JSON's ``"\\ud800"`` escape parses into one, yet no UTF-8 column, request hash or response
    can carry it: such a request would fail with a 500 after validation. A loop, not recursion,
    because a body may nest as deep as the JSON parser allows.
    """
    found: set[str] = set()
    stack = _children("", body)
    while stack:
        path, key, value = stack.pop()
        if (key is not None and not _storable(key, nul)) or (isinstance(value, str) and not _storable(value, nul)):
            found.add(path)
        stack.extend(_children(path, value))
    return sorted(found)
