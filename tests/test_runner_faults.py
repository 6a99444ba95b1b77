"""The runner when the database fails under it: lease renewals that fail are retried, and a
run whose lease surely ran out stops writing (the task is someone else's to finish)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from sfumato.db.models import Task
from sfumato.deps import Deps
from sfumato.worker import lease
from sfumato.worker.runner import TaskRun
from tests.conftest import new_customer
from tests.helpers import claimed_tasks


def _failing_renew(failures: int) -> Callable[..., Any]:
    real = lease.renew
    calls = {"n": 0}

    async def renew(*args: Any, **kwargs: Any) -> bool | None:
        calls["n"] += 1
        if calls["n"] <= failures:
            raise OperationalError("UPDATE tasks", {}, ConnectionError("database went away"))
        return await real(*args, **kwargs)

    return renew


async def _status(deps: Deps, task_id: str) -> str:
    async with deps.db.read() as session:
        task = await session.get(Task, task_id)
        assert task is not None
        return task.status


async def test_a_failed_renewal_is_retried_and_the_task_still_succeeds(
    make_deps, monkeypatch: pytest.MonkeyPatch
) -> None:
    deps = await make_deps(run_worker=False, lease_seconds=0.6, sandbox_latency_ms="700")
    [claim] = await claimed_tasks(deps, (await new_customer(deps)).account_id, 1)
    monkeypatch.setattr(lease, "renew", _failing_renew(1))
    await TaskRun(deps, claim).execute()
    assert await _status(deps, claim.task_id) == "succeeded"


async def test_renewals_failing_past_the_lease_stop_the_run_without_writes(
    make_deps, monkeypatch: pytest.MonkeyPatch
) -> None:
    deps = await make_deps(run_worker=False, lease_seconds=0.3, sandbox_latency_ms="5000")
    [claim] = await claimed_tasks(deps, (await new_customer(deps)).account_id, 1)
    monkeypatch.setattr(lease, "renew", _failing_renew(1000))
    run = TaskRun(deps, claim)
    await run.execute()
    assert run.stop_reason == "lease_lost"
    assert await _status(deps, claim.task_id) == "running"  # left for recovery, not finished here
    assert list(deps.settings.storage_dir.rglob("*.png")) == []


def test_connection_trouble_is_transient_but_a_statements_own_fault_is_not() -> None:
    from sqlalchemy.exc import DBAPIError, IntegrityError

    from sfumato.worker.runner import _transient_dbapi

    class CannotConnectNow(Exception):
        """Stands for asyncpg's CannotConnectNowError, which SQLAlchemy wraps as a plain DBAPIError."""

    assert _transient_dbapi(DBAPIError("SELECT 1", {}, CannotConnectNow("the database system is shutting down")))
    assert not _transient_dbapi(IntegrityError("INSERT", {}, Exception("duplicate key")))
