"""The Files API's use cases: keep an upload, read, list and delete the account's files.

An upload is spooled to a temporary file next to the store while it is counted against the
limit, sniffed from its bytes, and only then moved into place and recorded. Any refusal
removes the temporary file: a refused upload leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import UploadFile

from sfumato import ids, pagination
from sfumato.db.models import StoredFile
from sfumato.deps import Deps
from sfumato.errors import FileTooLarge, NotFound
from sfumato.files.names import clean_name
from sfumato.files.outputs import EXTENSIONS
from sfumato.files.sniff import Sniffed, kind_of, probe_media, sniff_image

CHUNK = 256 * 1024
"""Copy size: each concurrent upload holds one chunk; 1 MiB chunks cost +25 MB RSS at 20 uploads,
64 KiB ones a third of the throughput (one thread hop per chunk). See docs/benchmarks.md."""


async def _spool(upload: UploadFile, directory: Path, limits: dict[str, int]) -> Path:
    """Copy the upload to a temporary file, refusing it as soon as it passes its kind's limit
    (the kind is read from the first bytes, so a large video limit never admits a large image)."""
    fd, name = tempfile.mkstemp(dir=directory, prefix="upload-", suffix=".part")
    path, size, limit = Path(name), 0, limits["image"]
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := await upload.read(CHUNK):
                if size == 0:
                    limit = limits[kind_of(chunk[:16])]
                size += len(chunk)
                if size > limit:
                    raise FileTooLarge(f"The file is over {limit} bytes.")
                await asyncio.to_thread(out.write, chunk)
    except BaseException:
        await asyncio.to_thread(path.unlink, missing_ok=True)
        raise
    return path


def _sniff(path: Path, deps: Deps) -> Sniffed:
    with path.open("rb") as handle:
        head = handle.read(16)
    if kind_of(head) == "image":
        return sniff_image(path, deps.settings.max_image_pixels)
    return probe_media(path, deps.settings.max_media_seconds)


async def store_upload(deps: Deps, account_id: str, upload: UploadFile, now: datetime) -> StoredFile:
    settings = deps.settings
    limits = {"image": settings.upload_max_bytes, "video": settings.upload_max_bytes_video,
              "audio": settings.upload_max_bytes_audio}
    spooled = await _spool(upload, deps.storage.temp_dir(), limits)
    try:
        sniffed = await asyncio.to_thread(_sniff, spooled, deps)
        file_id = ids.file_id()
        ext = EXTENSIONS[sniffed.mime_type]
        key = f"uploads/{account_id}/{file_id}.{ext}"
        size = (await asyncio.to_thread(spooled.stat)).st_size
        await deps.storage.put_file(key, spooled)
    finally:
        await asyncio.to_thread(spooled.unlink, missing_ok=True)
    stored = StoredFile(
        id=file_id, account_id=account_id, task_id=None, purpose="upload", kind=sniffed.kind,
        name=clean_name(upload.filename, f"upload.{ext}"), mime_type=sniffed.mime_type, bytes=size,
        width=sniffed.width or None, height=sniffed.height or None, duration_ms=sniffed.duration_ms,
        storage_key=key, created_at=now,
        expires_at=now + timedelta(hours=settings.upload_retention_hours),
    )
    try:
        async with deps.db.write() as session:
            session.add(stored)
    except BaseException:
        await deps.storage.delete(key)
        raise
    return stored


def _visible(account_id: str, now: datetime):  # type: ignore[no-untyped-def]
    return (StoredFile.account_id == account_id, StoredFile.deleted_at.is_(None), StoredFile.expires_at > now)


async def get_file(session: AsyncSession, account_id: str, file_id: str, now: datetime) -> StoredFile:
    stored = await session.scalar(select(StoredFile).where(StoredFile.id == file_id, *_visible(account_id, now)))
    if stored is None:
        raise NotFound(f"No file {file_id[:80]}.")
    return stored


async def list_files(
    session: AsyncSession, account_id: str, now: datetime, *, limit: int = 20, cursor: str | None = None
) -> tuple[list[StoredFile], str | None]:
    stmt, limit = pagination.page_query(select(StoredFile).where(*_visible(account_id, now)),
                                        StoredFile.created_at, StoredFile.id, cursor, limit)
    rows = list(await session.scalars(stmt))
    page = rows[:limit]
    return page, (pagination.encode(page[-1].created_at, page[-1].id) if len(rows) > limit else None)


async def delete_file(session: AsyncSession, account_id: str, file_id: str, now: datetime) -> None:
    """Hide the file at once; its bytes go with the next cleanup once no active task uses them."""
    await get_file(session, account_id, file_id, now)
    await session.execute(update(StoredFile).where(StoredFile.id == file_id).values(deleted_at=now))
