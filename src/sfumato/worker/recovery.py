"""Nothing stays stuck: expired leases go back to the queue (or fail, refunded, once the task
has used its attempts), and old idempotency keys, expired outputs and orphaned bytes are
cleaned up."""

from __future__ import annotations

import logging

from sfumato import metrics
from sfumato.db.notify import TASK_QUEUED, notify
from sfumato.deps import Deps
from sfumato.files.cleanup import orphans_due, purge_files, purge_orphans
from sfumato.tasks import lifecycle
from sfumato.tasks.service import purge_idempotency_keys
from sfumato.tasks.status import Status
from sfumato.worker import lease

log = logging.getLogger("sfumato.worker")


async def recover_expired_leases(deps: Deps) -> tuple[int, int]:
    """Returns ``(requeued, ended)``: tasks put back in the queue, and tasks ended for good
    (out of attempts, or their client had asked to cancel them), all of those refunded."""
    requeued = ended = 0
    async with deps.db.read() as session:
        stale = await lease.expired(session, deps.clock.now())
    for task_id, token, attempts, model, reserved in stale:
        async with deps.db.write() as session:
            now = deps.clock.now()
            if attempts < deps.settings.max_attempts:
                outcome = await lifecycle.requeue(session, task_id, lease_token=token, now=now)
            else:
                outcome = await lifecycle.abandon(
                    session, task_id, lease_token=token, now=now,
                    message=f"The worker running this task stopped responding {attempts} time(s); credits refunded.")
            if outcome is Status.QUEUED:
                await notify(session, TASK_QUEUED)
                requeued += 1
        if outcome is not None and outcome is not Status.QUEUED:
            ended += 1
            metrics.task_ended(model, outcome, reserved, 0)
    if requeued:
        deps.signals.task_queued()  # an idle worker would otherwise wait for its next poll
    if requeued or ended:
        log.warning("recovered expired leases: %d requeued, %d ended", requeued, ended)
    return requeued, ended


async def end_missed_deadlines(deps: Deps) -> int:
    """Queued tasks past their ``Cancel-After`` deadline end ``canceled`` (``deadline_exceeded``),
    refunded; whichever process gets there first ends each, once. (A running one is stopped by
    its own run's timer; one whose worker died is requeued here and ended on the next round.)"""
    async with deps.db.write() as session:
        ended = await lifecycle.expire_queued(session, deps.clock.now())
    for _task_id, model, reserved in ended:
        metrics.task_ended(model, Status.CANCELED, reserved, 0)
        metrics.DEADLINES.labels(model, "queued").inc()
    if ended:
        log.info("ended %d queued task(s) past their deadline, refunded", len(ended))
    return len(ended)


async def maintain(deps: Deps) -> None:
    """One round of upkeep; the worker calls it at start-up and then periodically."""
    await recover_expired_leases(deps)
    await end_missed_deadlines(deps)
    async with deps.db.write() as session:
        await purge_idempotency_keys(session, deps.clock.now(), deps.idempotency_window)
    await purge_files(deps)
    if orphans_due(deps):
        await purge_orphans(deps)
