"""Nothing stays stuck: expired leases go back to the queue (or fail, refunded, once the task
has used its attempts), and old idempotency keys and expired outputs are cleaned up."""

from __future__ import annotations

import logging

from sfumato import metrics
from sfumato.deps import Deps
from sfumato.files.cleanup import purge_files
from sfumato.tasks import lifecycle
from sfumato.tasks.service import purge_idempotency_keys
from sfumato.worker import lease

log = logging.getLogger("sfumato.worker")


async def recover_expired_leases(deps: Deps) -> tuple[int, int]:
    """Returns ``(requeued, failed)``."""
    requeued = failed = 0
    async with deps.db.read() as session:
        stale = await lease.expired(session, deps.clock.now())
    for task_id, token, attempts, model, reserved in stale:
        async with deps.db.write() as session:
            now = deps.clock.now()
            if attempts < deps.settings.max_attempts:
                if await lifecycle.requeue(session, task_id, lease_token=token, now=now):
                    requeued += 1
            elif await lifecycle.fail(
                session, task_id, code="worker_lost", now=now, lease_token=token,
                message=f"The worker running this task stopped responding {attempts} time(s); credits refunded.",
            ):
                failed += 1
                metrics.task_ended(model, "failed", reserved, 0)
    if requeued or failed:
        log.warning("recovered expired leases: %d requeued, %d failed", requeued, failed)
    return requeued, failed


async def maintain(deps: Deps) -> None:
    """One round of upkeep; the worker calls it at start-up and then periodically."""
    await recover_expired_leases(deps)
    async with deps.db.write() as session:
        await purge_idempotency_keys(session, deps.clock.now(), deps.idempotency_window)
    await purge_files(deps)
