"""Keeping a task's output images: bytes to storage first, rows in the finishing transaction."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sfumato import ids
from sfumato.db.models import StoredFile
from sfumato.files.previews import PURPOSE as PREVIEW
from sfumato.providers.base import OutputImage
from sfumato.storage import Storage

EXTENSIONS = {
    "image/png": "png", "image/jpeg": "jpg", "image/webp": "webp",
    "video/mp4": "mp4", "video/webm": "webm",
    "audio/mp4": "m4a", "audio/mpeg": "mp3", "audio/wav": "wav", "audio/ogg": "ogg", "audio/flac": "flac",
}


async def _write(storage: Storage, account_id: str, task_id: str, image: OutputImage, now: datetime,
                 retention: timedelta, purpose: str, stem: str) -> StoredFile:
    """Write one image atomically and return its (not yet added) file row, ``{stem}.{ext}``."""
    file_id = ids.file_id()
    ext = EXTENSIONS.get(image.mime_type, "bin")
    key = f"outputs/{account_id}/{file_id}.{ext}"
    await storage.put(key, image.data)
    return StoredFile(
        id=file_id, account_id=account_id, task_id=task_id, purpose=purpose, kind="image",
        name=f"{stem}.{ext}", mime_type=image.mime_type, bytes=len(image.data),
        width=image.width, height=image.height, storage_key=key, created_at=now, expires_at=now + retention,
    )


async def write_outputs(
    storage: Storage,
    account_id: str,
    task_id: str,
    images: list[OutputImage],
    now: datetime,
    retention: timedelta,
) -> list[StoredFile]:
    """Write each image atomically and return its (not yet added) file row."""
    return [await _write(storage, account_id, task_id, image, now, retention, "output", f"{task_id}-{index}")
            for index, image in enumerate(images)]


async def write_preview(storage: Storage, account_id: str, task_id: str, index: int, image: OutputImage,
                        now: datetime, retention: timedelta) -> StoredFile:
    """Write one partial image (a preview) like an output, as a ``preview`` file: kept as long
    as the outputs, never part of the result, never billed."""
    return await _write(storage, account_id, task_id, image, now, retention, PREVIEW, f"{task_id}-preview-{index}")


def media_entry(stored: StoredFile) -> dict[str, Any]:
    """How an output is kept in ``task.result``; the URL is signed when the task is read."""
    return {
        "file_id": stored.id, "kind": stored.kind, "name": stored.name, "mimeType": stored.mime_type,
        "width": stored.width, "height": stored.height, "bytes": stored.bytes,
    }
