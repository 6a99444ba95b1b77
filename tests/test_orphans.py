"""Orphaned bytes (stored, but no ``files`` row names them: a worker killed between writing an
output and committing its row, an atomic write cut short) are found and removed once older than
``SFUMATO_ORPHAN_GRACE_SECONDS``; nothing a row references, nothing young, nothing outside the
store's own key space is touched. Local disk here, S3 in ``test_storage_s3.py``."""

from __future__ import annotations

import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sfumato import ids
from sfumato.clock import FrozenClock
from sfumato.deps import Deps
from sfumato.files.cleanup import purge_orphans
from sfumato.files.outputs import write_outputs
from sfumato.providers.base import OutputImage
from sfumato.storage import LocalStorage
from sfumato.worker.recovery import maintain
from tests.conftest import new_customer, serve
from tests.helpers import create, wait_for_task
from tests.test_files_api import image_bytes, leftovers, upload


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


async def killed_worker_outputs(deps: Deps, account_id: str, count: int = 2) -> list[str]:
    """What a worker killed after writing its outputs and before committing their rows leaves."""
    images = [OutputImage(data=image_bytes(color="gray"), mime_type="image/png", width=64, height=48)] * count
    files = await write_outputs(deps.storage, account_id, "task_" + "0" * 32, images, deps.clock.now(),
                                timedelta(hours=1))
    return [f.storage_key for f in files]


def interrupted_write(deps: Deps, account_id: str) -> str:
    """The temporary file an atomic write leaves when its process dies before the rename."""
    directory = deps.settings.storage_dir / "outputs" / account_id
    directory.mkdir(parents=True, exist_ok=True)
    fd, path = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".part")
    os.write(fd, b"half an image")
    os.close(fd)
    return str(Path(path).relative_to(deps.settings.storage_dir))


async def test_orphans_past_the_grace_go_and_everything_else_stays(make_deps) -> None:
    deps = await make_deps(auth_cache_seconds=0, sandbox_latency_ms="0")
    who = await new_customer(deps)
    async with serve(deps) as client:  # the real flows: an upload, a task's output, a deleted file
        kept = (await upload(client, who, image_bytes())).json()
        deleted = (await upload(client, who, image_bytes(color="blue"))).json()
        assert (await client.delete(f"/api/v1/files/{deleted['id']}", headers=who.headers)).status_code == 204
        task = await wait_for_task(client, who, (await create(client, who, model="qwen-image")).json()["id"])
        assert task["status"] == "succeeded"
    referenced = leftovers(deps)
    assert len(referenced) == 3 and f"uploads/{who.account_id}/{kept['id']}.png" in referenced
    old_outputs = await killed_worker_outputs(deps, who.account_id)
    old_temp = interrupted_write(deps, who.account_id)
    young = await killed_worker_outputs(deps, who.account_id, count=1)
    foreign = deps.settings.storage_dir / "backups" / "notes.png"  # not sfumato's key space
    foreign.parent.mkdir()
    foreign.write_bytes(b"someone else's")
    root = deps.settings.storage_dir
    for name in [*referenced, *old_outputs, old_temp, "backups/notes.png"]:
        age(root / name, 3601)

    assert await purge_orphans(deps) == 3
    assert sorted(leftovers(deps)) == sorted([*referenced, *young, "backups/notes.png"])
    assert await purge_orphans(deps) == 0


async def test_an_output_younger_than_the_grace_is_never_taken(make_deps) -> None:
    """A live worker writes an output's bytes before the transaction that inserts its row."""
    clock = FrozenClock()
    deps = await make_deps(run_worker=False, clock=clock, orphan_grace_seconds=600)
    who = await new_customer(deps)
    [key] = await killed_worker_outputs(deps, who.account_id, count=1)
    clock.advance(seconds=599)
    assert await purge_orphans(deps) == 0
    clock.advance(seconds=2)
    assert await purge_orphans(deps) == 1
    assert key not in leftovers(deps)


async def test_the_maintenance_round_looks_for_orphans_once_per_grace_period(make_deps) -> None:
    grace = 3600
    boundary = (int(time.time()) // grace + 2) * grace  # a whole period ahead: today's files are old
    clock = FrozenClock(datetime.fromtimestamp(boundary + 1, UTC))
    deps = await make_deps(run_worker=False, clock=clock)
    who = await new_customer(deps)
    first = await killed_worker_outputs(deps, who.account_id, count=1)
    await maintain(deps)  # the first round past a period's start
    assert leftovers(deps) == []
    second = await killed_worker_outputs(deps, who.account_id, count=1)
    clock.advance(seconds=deps.settings.maintenance_interval_seconds)
    await maintain(deps)  # the next round, same period: no second scan
    assert leftovers(deps) == second and first != second
    clock.advance(seconds=grace - deps.settings.maintenance_interval_seconds)
    await maintain(deps)  # the first round of the next period
    assert leftovers(deps) == []


async def test_the_local_scan_lists_every_key_and_leftover_with_its_time(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "storage")
    keys = sorted(f"outputs/acct_{n % 3}/{ids.file_id()}.png" for n in range(700))  # several batches
    for key in keys:
        await storage.put(key, b"x")
    await storage.put("uploads/acct_0/file_1.webp", b"y")
    (storage.temp_dir() / "upload-1.part").write_bytes(b"spooling")  # the spool: not a key
    (storage.root / "outputs" / "acct_0" / "notes (copy).png").write_bytes(b"")  # not a key sfumato makes
    leftover = storage.root / "outputs" / "acct_1" / ".tmp-abc_123.part"
    leftover.write_bytes(b"cut short")
    age(leftover, 7200)

    listed = {item.key: item.modified async for item in storage.scan("outputs/")}
    assert sorted(listed) == sorted([*keys, "outputs/acct_1/.tmp-abc_123.part"])
    assert abs(listed[keys[0]] - datetime.now(UTC)) < timedelta(minutes=1)
    assert abs(listed["outputs/acct_1/.tmp-abc_123.part"] - (datetime.now(UTC) - timedelta(hours=2))) < timedelta(
        minutes=1)
    assert [item.key async for item in storage.scan("uploads/")] == ["uploads/acct_0/file_1.webp"]
    assert [item.key async for item in storage.scan("nothing-here/")] == []

    await storage.delete("outputs/acct_1/.tmp-abc_123.part")  # delete takes every key scan gives
    assert not leftover.exists()
    assert await storage.sweep_interrupted("outputs/", datetime.now(UTC)) == 0  # its leftovers are keys
