"""Removes the bytes of files that expired or were deleted, except those a queued or running
task still references: a task never loses its input under it."""

from __future__ import annotations

from sqlalchemy import or_, select, update

from sfumato.db.models import StoredFile, Task
from sfumato.deps import Deps
from sfumato.tasks.status import Status


async def purge_files(deps: Deps, batch: int = 200) -> int:
    now = deps.clock.now()
    async with deps.db.read() as session:
        in_use = {
            file_id
            for ids_ in await session.scalars(select(Task.reference_file_ids).where(
                Task.status.in_([Status.QUEUED.value, Status.RUNNING.value])))
            for file_id in ids_ or []
        }
        rows = list(await session.scalars(
            select(StoredFile).where(
                StoredFile.purged_at.is_(None),
                or_(StoredFile.expires_at <= now, StoredFile.deleted_at.is_not(None)),
            ).limit(batch + len(in_use))
        ))
    purged = 0
    for stored in (r for r in rows if r.id not in in_use):
        async with deps.db.write() as session:
            await session.execute(update(StoredFile).where(StoredFile.id == stored.id).values(
                purged_at=now, deleted_at=stored.deleted_at or now))
        await deps.storage.delete(stored.storage_key)
        purged += 1
    return purged
