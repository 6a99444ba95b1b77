"""A client's file name kept only as display metadata: never a path, never trusted."""

from __future__ import annotations

import unicodedata

MAX_NAME_BYTES = 255


def clean_name(raw: str | None, fallback: str) -> str:
    """The last path component, NFC, without control or format characters (RTL overrides
    included), at most 255 UTF-8 bytes cut at a character boundary; ``fallback`` if nothing is left."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = unicodedata.normalize("NFC", name)
    name = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Cs")).strip(" .")
    encoded = name.encode("utf-8")[:MAX_NAME_BYTES]
    name = encoded.decode("utf-8", "ignore")
    return name or fallback
