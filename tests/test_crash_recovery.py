"""A real crash: ``kill -9`` of a server with tasks in flight, then a fresh start on the same
data. Every task ends, succeeds once, and the ledger still balances."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from sfumato.accounts import service as accounts
from sfumato.db.models import LedgerEntry, Task
from tests.conftest import new_customer
from tests.processes import Processes, wait_until

pytestmark = pytest.mark.slow


def _statuses(url: str, headers: dict[str, str], ids: list[str]) -> Counter[str]:
    return Counter(httpx.get(f"{url}/api/v1/tasks/{i}", headers=headers).json()["status"] for i in ids)


async def test_tasks_running_in_a_killed_server_finish_after_restart(make_deps, tmp_path: Path) -> None:
    deps = await make_deps(run_worker=False)
    who = await new_customer(deps, credits=100)
    env = {"SFUMATO_DATA_DIR": str(deps.settings.data_dir), "SFUMATO_SECRET_KEY": "test-secret",
           "SFUMATO_LEASE_SECONDS": "1", "SFUMATO_MAINTENANCE_INTERVAL_SECONDS": "0.2",
           "SFUMATO_WORKER_POLL_SECONDS": "0.2", "SFUMATO_SANDBOX_LATENCY_MS": "60000"}
    if deps.settings.database_url:
        env["SFUMATO_DATABASE_URL"] = deps.settings.database_url
    processes = Processes(env, tmp_path)
    first, url = processes.api("first", worker=True)
    try:
        ids = [httpx.post(f"{url}/api/v1/tasks", headers=who.headers,
                          json={"model": "qwen-image", "prompt": f"crash {n}"}).json()["id"] for n in range(5)]
        wait_until(lambda: _statuses(url, who.headers, ids) == Counter(running=5), 30)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()

    _, url = processes.api("second", worker=True, env={"SFUMATO_SANDBOX_LATENCY_MS": "20"})
    try:
        wait_until(lambda: _statuses(url, who.headers, ids) == Counter(succeeded=5), 30)
    finally:
        processes.stop_all()

    async with deps.db.read() as session:
        tasks = list(await session.scalars(select(Task).where(Task.id.in_(ids))))
        entries = list(await session.scalars(select(LedgerEntry).where(LedgerEntry.task_id.in_(ids))))
        balance = (await accounts.get_account(session, who.account_id)).balance
        total = await accounts.ledger_sum(session, who.account_id)
    assert all(t.attempts == 2 and t.final_credits == 4 for t in tasks)
    assert Counter(e.kind for e in entries) == Counter(reserve=5, settle=5)
    assert balance == total == 100 - 5 * 4
