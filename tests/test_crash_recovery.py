"""A real crash: ``kill -9`` of a server with tasks in flight, then a fresh start on the same
data. Every task ends, succeeds once, and the ledger still balances."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from sfumato.accounts import service as accounts
from sfumato.db.models import LedgerEntry, Task
from tests.conftest import new_customer

pytestmark = pytest.mark.slow


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _port()
    proc = subprocess.Popen([sys.executable, "-m", "sfumato.cli", "serve", "--port", str(port)],
                            env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError(log.read_text())


def _statuses(url: str, headers: dict[str, str], ids: list[str]) -> Counter[str]:
    return Counter(httpx.get(f"{url}/api/v1/tasks/{i}", headers=headers).json()["status"] for i in ids)


def _wait(predicate, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.05)


async def test_tasks_running_in_a_killed_server_finish_after_restart(make_deps, tmp_path: Path) -> None:
    deps = await make_deps(run_worker=False)
    who = await new_customer(deps, credits=100)
    env = {**os.environ, "SFUMATO_DATA_DIR": str(deps.settings.data_dir), "SFUMATO_SECRET_KEY": "test-secret",
           "SFUMATO_LEASE_SECONDS": "1", "SFUMATO_MAINTENANCE_INTERVAL_SECONDS": "0.2",
           "SFUMATO_WORKER_POLL_SECONDS": "0.2", "SFUMATO_SANDBOX_LATENCY_MS": "60000"}
    if deps.settings.database_url:
        env["SFUMATO_DATABASE_URL"] = deps.settings.database_url
    log = tmp_path / "server.log"

    first, url = _start(env, log)
    try:
        ids = [httpx.post(f"{url}/api/v1/tasks", headers=who.headers,
                          json={"model": "qwen-image", "prompt": f"crash {n}"}).json()["id"] for n in range(5)]
        _wait(lambda: _statuses(url, who.headers, ids) == Counter(running=5))
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()

    second, url = _start({**env, "SFUMATO_SANDBOX_LATENCY_MS": "20"}, log)
    try:
        _wait(lambda: _statuses(url, who.headers, ids) == Counter(succeeded=5))
    finally:
        second.terminate()
        second.wait(timeout=20)

    async with deps.db.read() as session:
        tasks = list(await session.scalars(select(Task).where(Task.id.in_(ids))))
        entries = list(await session.scalars(select(LedgerEntry).where(LedgerEntry.task_id.in_(ids))))
        balance = (await accounts.get_account(session, who.account_id)).balance
        total = await accounts.ledger_sum(session, who.account_id)
    assert all(t.attempts == 2 and t.final_credits == 4 for t in tasks)
    assert Counter(e.kind for e in entries) == Counter(reserve=5, settle=5)
    assert balance == total == 100 - 5 * 4
