"""Local disk under ``{data_dir}/storage``. Writes go to a temporary file beside the target,
are flushed to disk and renamed into place, so a crash never leaves a half-written file visible.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

from sfumato.storage.spool import sweep

_SAFE_KEY = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*(\.[a-z0-9]+)?$")


class LocalStorage:
    def __init__(self, root: Path):
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        # The pattern admits no "..", no absolute path and no empty segment, so the joined path
        # cannot leave the root; resolving it would cost a syscall per path component on every
        # write and read (5 ms per output under load, measured in bench/slow_tasks.py).
        if not _SAFE_KEY.fullmatch(key):
            raise ValueError(f"unsafe storage key {key!r}")
        return self.root / key

    def _write(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self._write, self._path(key), data)

    def _move(self, path: Path, source: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with source.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(source, path)

    async def put_file(self, key: str, source: Path) -> None:
        await asyncio.to_thread(self._move, self._path(key), source)

    def temp_dir(self) -> Path:
        path = self.root / ".incoming"
        path.mkdir(exist_ok=True)
        return path

    async def sweep_temp(self, older_than: timedelta) -> int:
        return await asyncio.to_thread(sweep, self.temp_dir(), older_than)

    async def get(self, key: str) -> bytes:
        return await asyncio.to_thread(self._path(key).read_bytes)

    async def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(os.unlink, self._path(key))

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    async def stream(self, key: str) -> AsyncIterator[bytes]:
        data = await self.get(key)  # served from local_path in practice; here for the protocol
        yield data

    async def presigned_url(self, key: str, seconds: int, *, mime_type: str, disposition: str) -> str | None:
        return None  # local files are served by sfumato itself

    async def check(self) -> None:
        await self.put("health/probe", b"ok")
        await self.delete("health/probe")

    async def aclose(self) -> None:
        pass
