"""A task's previews (partial images an upstream streamed): ``preview`` files written by the
worker while the task runs (``worker/runner.py``), read by the doors that show them."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sfumato.db.models import StoredFile

PURPOSE = "preview"


async def previews_of(session: AsyncSession, task_id: str) -> list[StoredFile]:
    """The task's previews in the order they came (one run writes them one after another; the
    name's index orders those of one instant)."""
    return list(await session.scalars(select(StoredFile).where(
        StoredFile.task_id == task_id, StoredFile.purpose == PURPOSE).order_by(StoredFile.created_at,
                                                                                StoredFile.name)))
