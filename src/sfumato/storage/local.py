"""Local disk under ``{data_dir}/storage``. Writes go to a temporary file beside the target,
are flushed to disk and renamed into place, so a crash never leaves a half-written file visible
(only the temporary file, which ``scan`` lists so the orphan cleanup removes it).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import tempfile
from collections.abc import AsyncIterator, Generator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sfumato.storage.base import StoredKey
from sfumato.storage.spool import sweep

_SAFE_KEY = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*(\.[a-z0-9]+)?$")
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_TEMP_NAME = re.compile(r"\.tmp-[a-z0-9_]+\.part")
"""The names ``_write``'s ``mkstemp`` gives (prefix, its random letters, suffix)."""
SCAN_BATCH = 256
"""Directory entries read per thread hop while scanning: bounds memory and hop overhead."""


def _listed(key: str) -> bool:
    """A key sfumato could have written, or the temporary file of one of its writes."""
    directory, _, name = key.rpartition("/")
    if _TEMP_NAME.fullmatch(name):
        return not directory or _SAFE_KEY.fullmatch(directory) is not None
    return _SAFE_KEY.fullmatch(key) is not None


def _take(items: Iterator[StoredKey], count: int) -> list[StoredKey]:
    return list(itertools.islice(items, count))


def _stat(entry: os.DirEntry[str], key: str) -> StoredKey | None:
    try:
        if not entry.is_file(follow_symlinks=False):
            return None
        modified = entry.stat(follow_symlinks=False).st_mtime
    except FileNotFoundError:  # removed while the directory was read
        return None
    return StoredKey(key, datetime.fromtimestamp(modified, UTC))


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
        """Written beside its name, then renamed over it: a reader sees the whole file or none.
        No fsync: a killed process loses nothing (the bytes are in the page cache before the
        rename and before the row commits); only an OS crash or power cut can lose the last
        outputs, as it can the last SQLite commits at ``synchronous=NORMAL`` (docs/architecture.md).
        It cost a disk flush per image on the hot path."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
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
        if not _listed(key):
            raise ValueError(f"unsafe storage key {key!r}")
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(os.unlink, self.root / key)

    def _walk(self, prefix: str) -> Generator[StoredKey]:
        """One directory open at a time, read as it goes; what waits is the names of folders not
        yet read (about one per account), never the files. Dot directories (the upload spool
        ``.incoming``) and names sfumato never makes are skipped."""
        top = prefix.strip("/")
        if top and not all(_SEGMENT.fullmatch(part) for part in top.split("/")):
            raise ValueError(f"unsafe storage prefix {prefix!r}")
        pending = [top]
        while pending:
            folder = pending.pop()
            try:
                entries = os.scandir(self.root / folder)
            except (FileNotFoundError, NotADirectoryError):
                continue
            with entries:
                for entry in entries:
                    key = f"{folder}/{entry.name}" if folder else entry.name
                    if entry.is_dir(follow_symlinks=False):
                        if _SEGMENT.fullmatch(entry.name):
                            pending.append(key)
                    elif _listed(key) and (found := _stat(entry, key)) is not None:
                        yield found

    async def scan(self, prefix: str) -> AsyncIterator[StoredKey]:
        walk = self._walk(prefix)  # advanced in threads, one batch at a time, never two at once
        while batch := await asyncio.to_thread(_take, walk, SCAN_BATCH):
            for item in batch:
                yield item

    async def sweep_interrupted(self, prefix: str, before: datetime) -> int:
        return 0  # an interrupted write leaves a temp file among the keys, which scan lists

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
