"""The Files API's use cases: keep an upload, read, list and delete the account's files.

An upload arrives spooled to a temporary file next to the store (``files/multipart.py``, which
enforces the size limit while it streams); here it is sniffed from its bytes and only then moved
into place and recorded. Any refusal removes the temporary file: a refused upload leaves
nothing behind.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sfumato import ids, pagination
from sfumato.db.models import StoredFile
from sfumato.deps import Deps
from sfumato.errors import NotFound
from sfumato.files.multipart import SpooledFile
from sfumato.files.names import clean_name
from sfumato.files.outputs import EXTENSIONS
from sfumato.files.sniff import Sniffed, kind_of, probe_media, sniff_image
from sfumato.settings import Settings


def limits(settings: Settings) -> dict[str, int]:
    """Each kind's size limit; the kind is read from the first bytes while the body streams."""
    return {"image": settings.upload_max_bytes, "video": settings.upload_max_bytes_video,
            "audio": settings.upload_max_bytes_audio}


def _sniff(path: Path, deps: Deps) -> Sniffed:
    with path.open("rb") as handle:
        head = handle.read(16)
    if kind_of(head) == "image":
        return sniff_image(path, deps.settings.max_image_pixels)
    return probe_media(path, deps.settings.max_media_seconds)


async def store_upload(deps: Deps, account_id: str, spooled: SpooledFile, now: datetime) -> StoredFile:
    """Sniff the spooled file, move it under its server-made key and record it. The spool file
    is gone afterwards whatever happens; the stored bytes go again if the row cannot be written."""
    settings = deps.settings
    try:
        sniffed = await asyncio.to_thread(_sniff, spooled.path, deps)
        file_id = ids.file_id()
        ext = EXTENSIONS[sniffed.mime_type]
        key = f"uploads/{account_id}/{file_id}.{ext}"
        await deps.storage.put_file(key, spooled.path)
    finally:
        spooled.path.unlink(missing_ok=True)
    stored = StoredFile(
        id=file_id, account_id=account_id, task_id=None, purpose="upload", kind=sniffed.kind,
        name=clean_name(spooled.filename, f"upload.{ext}"), mime_type=sniffed.mime_type, bytes=spooled.size,
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


def _visible(account_id: str, now: datetime) -> tuple[ColumnElement[bool], ...]:
    """What an account may see of its files: its own, neither deleted nor expired."""
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
