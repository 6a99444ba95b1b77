"""Removes the bytes of files that expired or were deleted, except those a queued or running
task still references: a task never loses its input under it. And, once per grace period,
bytes no file row names at all (orphans: a worker killed between writing and committing)."""

from __future__ import annotations

import logging
import re
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
ORPHAN_PREFIXES = ("outputs/", "uploads/")
"""The key space files are written into (``outputs.py``, ``uploads.py``). Nothing outside it is
ever taken for an orphan, so other data sharing a bucket or directory is never touched."""
_KEY_OF_FILE = re.compile(r"(?:outputs|uploads)/[^/]+/(file_[0-9a-f]{32})\.[a-z0-9]+")
"""A file's key ends in its id, so most keys are looked up by primary key."""

log = logging.getLogger("sfumato.files")


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


def orphans_due(deps: Deps) -> bool:
    """True in the maintenance round that first passes the start of an orphan period (a multiple
    of the grace period since the epoch), so each worker scans once per period. Worked out from
    the clock alone, nothing kept between rounds: a round starting more than one maintenance
    interval after the boundary (the round before ran long) skips that period; the next one
    catches up."""
    every = deps.settings.orphan_grace_seconds
    now = deps.clock.now().timestamp()
    return now // every != (now - deps.settings.maintenance_interval_seconds) // every


async def purge_orphans(deps: Deps, batch: int = 500) -> int:
    """Remove stored bytes under ``ORPHAN_PREFIXES`` that no unpurged file row names and that are
    older than ``SFUMATO_ORPHAN_GRACE_SECONDS``, and what interrupted writes left there; returns
    how many went.

    Why the grace: bytes are always stored before their row is committed (an output before the
    transaction that ends its task, an upload before its insert), so young bytes without a row
    may belong to a live worker or request about to commit. The grace has to be longer than
    that gap ever is: the finishing transaction is retried for at most one lease
    (``SFUMATO_LEASE_SECONDS``), and an upload's bytes are dated when its spool file was last
    written (local disk) or its multipart upload began (S3), so the sniffing and the transfer
    count too. An hour is far above all of these; bytes that old with no row are never
    committed (their writer died, or their transaction was rolled back and its cleanup failed).
    """
    cutoff = deps.clock.now() - timedelta(seconds=deps.settings.orphan_grace_seconds)
    removed = 0
    for prefix in ORPHAN_PREFIXES:
        old: list[str] = []
        async for item in deps.storage.scan(prefix):
            if item.modified < cutoff:
                old.append(item.key)
            if len(old) >= batch:
                removed += await _remove_unnamed(deps, old)
                old = []
        removed += await _remove_unnamed(deps, old)
        removed += await deps.storage.sweep_interrupted(prefix, cutoff)
    if removed:
        log.warning("removed %d orphaned stored file(s) older than %ss", removed, deps.settings.orphan_grace_seconds)
    return removed


async def _remove_unnamed(deps: Deps, keys: list[str]) -> int:
    """Delete those of ``keys`` no unpurged row names (a purged row's bytes are already gone)."""
    if not keys:
        return 0
    by_id = {match.group(1): key for key in keys if (match := _KEY_OF_FILE.fullmatch(key))}
    others = sorted(set(keys) - set(by_id.values()))  # temp files: no index, but there are few
    live = StoredFile.purged_at.is_(None)
    named: set[str] = set()
    async with deps.db.read() as session:
        if by_id:
            named.update(await session.scalars(select(StoredFile.storage_key).where(
                StoredFile.id.in_(by_id), live)))
        if others:
            named.update(await session.scalars(select(StoredFile.storage_key).where(
                StoredFile.storage_key.in_(others), live)))
    unnamed = [key for key in keys if key not in named]
    for key in unnamed:
        await deps.storage.delete(key)
    return len(unnamed)
