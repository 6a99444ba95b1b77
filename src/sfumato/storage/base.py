"""The storage interface: every byte the server keeps goes through these few calls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import NamedTuple, Protocol


class StoredKey(NamedTuple):
    key: str
    modified: datetime
    """When the bytes were last written (UTC, the store's own clock)."""


class Storage(Protocol):
    async def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``; readers see all of it or nothing."""

    async def put_file(self, key: str, source: Path) -> None:
        """Move the finished file ``source`` (from ``temp_dir``) under ``key``, atomically."""

    def temp_dir(self) -> Path:
        """Where uploads are spooled while they arrive (same file system as the store)."""

    async def sweep_temp(self, older_than: timedelta) -> int:
        """Remove spool files untouched for ``older_than`` (left by a server stopped mid-upload)."""

    async def get(self, key: str) -> bytes: ...

    async def delete(self, key: str) -> None:
        """Remove ``key`` (any key ``scan`` yields); removing a missing key is not an error."""

    def scan(self, prefix: str) -> AsyncIterator[StoredKey]:
        """Every key under ``prefix`` (``"outputs/"``) with its modification time, a page at a
        time: memory stays bounded however many there are. Leftovers of interrupted writes that
        sit in the store under a name (local temp files) are listed too; the upload spool is not."""

    async def sweep_interrupted(self, prefix: str, before: datetime) -> int:
        """Remove what writes under ``prefix`` begun before ``before`` left behind outside the key
        space (unfinished S3 multipart uploads); returns how many. Local disk: none (``scan``
        lists its temp files)."""

    def local_path(self, key: str) -> Path | None:
        """A filesystem path to serve the bytes from directly, when there is one."""

    def stream(self, key: str) -> AsyncIterator[bytes]:
        """The bytes in pieces, for serving a file without holding it whole."""

    async def presigned_url(self, key: str, seconds: int, *, mime_type: str, disposition: str) -> str | None:
        """A URL of the backend itself to send the client to, or ``None`` (sfumato serves it)."""

    async def check(self) -> None:
        """Raise unless the storage can be written and read now (readiness)."""

    async def aclose(self) -> None:
        """Release clients (the app's lifespan calls this)."""
