"""Separate API and worker processes on one PostgreSQL: they signal each other through
LISTEN/NOTIFY, so a new task starts (and a cancel lands) without waiting for a poll."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Customer, new_customer
from tests.processes import Processes, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes({}, tmp_path)
    yield procs
    procs.stop_all()


def _status(url: str, who: Customer, task_id: str) -> str:
    return str(httpx.get(f"{url}/api/v1/tasks/{task_id}", headers=who.headers).json()["status"])


async def _split_deployment(make_deps, processes: Processes, backend: str, latency_ms: str) -> tuple[str, Customer]:
    """One API process and one worker process that would only poll every two minutes."""
    if backend == "sqlite":
        pytest.skip("SQLite has no cross-process notification: separate workers rely on polling there")
    deps = await make_deps(run_worker=False)
    who = await new_customer(deps, credits=100)
    processes.env.update({
        "SFUMATO_DATA_DIR": str(deps.settings.data_dir), "SFUMATO_DATABASE_URL": str(deps.settings.database_url),
        "SFUMATO_SECRET_KEY": "test-secret", "SFUMATO_WORKER_POLL_SECONDS": "120", "SFUMATO_LEASE_SECONDS": "300",
        "SFUMATO_SANDBOX_LATENCY_MS": latency_ms,
    })
    _, url = processes.api("api")
    processes.worker("worker")
    wait_until(lambda: "worker started" in processes.log_text("worker"), 30, processes.log_text("worker"))
    time.sleep(1.5)  # past its first claim and its LISTEN set-up: from now on only a signal wakes it
    return url, who


async def test_a_worker_process_is_woken_by_notify(make_deps, processes: Processes, backend: str) -> None:
    url, who = await _split_deployment(make_deps, processes, backend, "50")
    task_id = httpx.post(f"{url}/api/v1/tasks", json={"model": "qwen-image", "prompt": "x"},
                         headers=who.headers).json()["id"]
    wait_until(lambda: _status(url, who, task_id) == "succeeded", 20,
               "the worker was not woken: " + processes.log_text("worker"))


async def test_a_cancel_reaches_the_worker_process_by_notify(make_deps, processes: Processes, backend: str) -> None:
    url, who = await _split_deployment(make_deps, processes, backend, "600000")
    task_id = httpx.post(f"{url}/api/v1/tasks", json={"model": "qwen-image", "prompt": "x"},
                         headers=who.headers).json()["id"]
    wait_until(lambda: _status(url, who, task_id) == "running", 20)
    assert httpx.post(f"{url}/api/v1/tasks/{task_id}/cancel", headers=who.headers).status_code == 200
    wait_until(lambda: _status(url, who, task_id) == "canceled", 20,
               "the cancel did not reach the worker: " + processes.log_text("worker"))
