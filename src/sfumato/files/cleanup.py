"""Removes the bytes of files that expired or were deleted, except those a queued or running
task still references: a task never loses its input under it."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import or_, select, update

from sfumato.db.models import StoredFile, Task
from sfumato.deps import Deps
from sfumato.tasks.status import Status

GRACE = timedelta(minutes=10)
"""How long after expiry or deletion a file is left alone. A task created while its reference
expired (or was deleted) commits after it checked the file; by waiting far longer than any
such transaction, the cleanup sees that task among the active ones and spares the file."""
STALE_SPOOL = timedelta(hours=1)
"""Spool files older than this belong to uploads whose server stopped mid-body."""


async def _active_references(deps: Deps) -> set[str]:
    async with deps.db.read() as session:
        return {
            file_id
            for ids_ in await session.scalars(select(Task.reference_file_ids).where(
                Task.status.in_([Status.QUEUED.value, Status.RUNNING.value])))
            for file_id in ids_ or []
        }


async def purge_files(deps: Deps, batch: int = 200) -> int:
    """One cleanup round; returns how many files lost their bytes. The bytes go first and the
    row is marked after, so a crash in between leaves a row to retry, never orphaned bytes."""
    now = deps.clock.now()
    in_use = await _active_references(deps)
    async with deps.db.read() as session:
        rows = list(await session.scalars(
            select(StoredFile).where(
                StoredFile.purged_at.is_(None),
                or_(StoredFile.expires_at <= now - GRACE, StoredFile.deleted_at <= now - GRACE),
            ).order_by(StoredFile.expires_at).limit(batch + len(in_use))
        ))
    purged = 0
    for stored in (r for r in rows if r.id not in in_use):
        await deps.storage.delete(stored.storage_key)
        async with deps.db.write() as session:
            await session.execute(update(StoredFile).where(StoredFile.id == stored.id).values(
                purged_at=now, deleted_at=stored.deleted_at or now))
        purged += 1
    await deps.storage.sweep_temp(STALE_SPOOL)
    return purged
