"""Fault tests on real PostgreSQL with many processes: crashes of API and worker processes
mid-load, a PostgreSQL restart, and Redis going away. Run last (they restart services)."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from sfumato.db.models import LedgerEntry, StoredFile, Task
from tests.conftest import Customer, new_customer
from tests.money import books
from tests.processes import Processes, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.restarts_services]
TASKS = 2000
may_restart_services = pytest.mark.skipif(
    os.environ.get("SFUMATO_TEST_RESTART_SERVICES") != "1",
    reason="stops this machine's PostgreSQL or Redis: set SFUMATO_TEST_RESTART_SERVICES=1 (.ci/run does)",
)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes({}, tmp_path)
    yield procs
    procs.stop_all()


async def _create_all(urls: list[str], who: Customer, total: int, clients: int) -> Counter[int]:
    """Concurrent clients create ``total`` tasks, each with its own client_request_id, moving to
    the next API process on a connection error and retrying the same id (that is what makes a
    retry after a crash safe)."""
    statuses: Counter[int] = Counter()
    numbers = iter(range(total))
    rotation = itertools.cycle(urls)

    async def client_loop(http: httpx.AsyncClient) -> None:
        for n in numbers:
            body = {"model": "qwen-image", "prompt": f"load {n}", "params": {"image_size": "square",
                    "output_format": "jpeg"}, "client_request_id": f"load-{n}"}
            for _ in range(20):
                try:
                    response = await http.post(f"{next(rotation)}/api/v1/tasks", json=body, headers=who.headers)
                except httpx.TransportError:
                    continue
                if response.status_code < 500:
                    statuses[response.status_code] += 1
                    break
            else:
                raise AssertionError(f"task {n} could not be created")

    async with httpx.AsyncClient(timeout=30) as http:
        await asyncio.gather(*(client_loop(http) for _ in range(clients)))
    return statuses


async def test_killing_an_api_and_a_worker_mid_load_loses_nothing(
    make_deps, processes: Processes, backend: str
) -> None:
    if backend == "sqlite":
        pytest.skip("many API and worker processes are the PostgreSQL deployment")
    deps = await make_deps(run_worker=False)
    who = await new_customer(deps, credits=TASKS * 4 + 100)
    processes.env.update({
        "SFUMATO_DATA_DIR": str(deps.settings.data_dir), "SFUMATO_DATABASE_URL": str(deps.settings.database_url),
        "SFUMATO_SECRET_KEY": "test-secret", "SFUMATO_RATE_LIMIT_CREATE": "1000000/minute",
        "SFUMATO_LEASE_SECONDS": "15", "SFUMATO_MAINTENANCE_INTERVAL_SECONDS": "1", "SFUMATO_MAX_ATTEMPTS": "10",
        "SFUMATO_SANDBOX_LATENCY_MS": "200-1500", "SFUMATO_WORKER_POLL_SECONDS": "1",
    })
    apis = [processes.api(f"api{i}") for i in range(3)]
    workers = [processes.worker(f"worker{i}") for i in range(3)]
    async def created() -> int:
        async with deps.db.read() as session:
            return int(await session.scalar(select(func.count()).select_from(Task)) or 0)

    async def kill_midway() -> None:
        while await created() < TASKS // 3:
            await asyncio.sleep(0.1)
        apis[0][0].send_signal(signal.SIGKILL)
        workers[0].send_signal(signal.SIGKILL)

    statuses, _ = await asyncio.gather(_create_all([url for _, url in apis], who, TASKS, clients=24), kill_midway())
    assert set(statuses) <= {200, 202}, statuses

    async def unfinished() -> int:
        async with deps.db.read() as session:
            return int(await session.scalar(select(func.count()).select_from(Task).where(
                Task.status.in_(["queued", "running"]))) or 0)

    for _ in range(2400):
        if await unfinished() == 0:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"{await unfinished()} tasks never ended")

    async with deps.db.read() as session:
        states = Counter((await session.scalars(select(Task.status))).all())
        per_task = Counter((await session.execute(
            select(LedgerEntry.task_id, LedgerEntry.kind).where(LedgerEntry.task_id.is_not(None)))).all())
        outputs = Counter((await session.scalars(select(StoredFile.task_id))).all())
        failures = Counter(str(e) for e in (await session.scalars(select(Task.error).where(
            Task.status == "failed"))).all())
    assert states == {"succeeded": TASKS}, failures
    assert set(per_task.values()) == {1} and len(per_task) == 2 * TASKS  # one reserve + one settle each
    assert set(outputs.values()) == {1} and len(outputs) == TASKS
    assert (await books(deps, who.account_id))["balance"] == 100


@may_restart_services
async def test_postgres_restart_gives_503_then_recovers(make_deps, processes: Processes, backend: str) -> None:
    if backend == "sqlite":
        pytest.skip("restarts the PostgreSQL server")
    cluster = subprocess.run(["bash", "-c", "ls /etc/postgresql"], capture_output=True, text=True).stdout.split()
    if not cluster:
        pytest.skip("no local PostgreSQL cluster to restart")
    deps = await make_deps(run_worker=False)
    who = await new_customer(deps, credits=1000)
    processes.env.update({
        "SFUMATO_DATA_DIR": str(deps.settings.data_dir), "SFUMATO_DATABASE_URL": str(deps.settings.database_url),
        "SFUMATO_SECRET_KEY": "test-secret", "SFUMATO_SANDBOX_LATENCY_MS": "50", "SFUMATO_AUTH_CACHE_SECONDS": "0",
        "SFUMATO_LEASE_SECONDS": "60",
    })
    _, url = processes.api("api", worker=True)
    before = httpx.post(f"{url}/api/v1/tasks", json={"model": "qwen-image", "prompt": "x"}, headers=who.headers)
    assert before.status_code == 202
    await deps.db.dispose()
    ctl = ["pg_ctlcluster", "--skip-systemctl-redirect", cluster[0], "main"]
    subprocess.run([*ctl, "stop", "-m", "fast"], check=True)
    try:
        down = httpx.get(f"{url}/api/v1/tasks/{before.json()['id']}", headers=who.headers)
        assert down.status_code == 503 and down.json()["error"]["code"] == "service_unavailable"
        assert down.headers["Retry-After"] == "1"
    finally:
        subprocess.run([*ctl, "start"], check=True)

    def answers() -> bool:
        return httpx.get(f"{url}/api/v1/tasks/{before.json()['id']}", headers=who.headers).status_code == 200

    wait_until(answers, 60, "sfumato did not recover after PostgreSQL came back")
    after = httpx.post(f"{url}/api/v1/tasks", json={"model": "qwen-image", "prompt": "y"}, headers=who.headers)
    assert after.status_code == 202
    wait_until(lambda: httpx.get(f"{url}/api/v1/tasks/{after.json()['id']}",
                                 headers=who.headers).json()["status"] == "succeeded", 60)
    # The task that was running when PostgreSQL stopped is finished by its worker's retried
    # commit once the database is back, well inside its 60 s lease: no second provider call.
    wait_until(lambda: httpx.get(f"{url}/api/v1/tasks/{before.json()['id']}",
                                 headers=who.headers).json()["status"] == "succeeded", 30)
    async with deps.db.read() as session:
        attempts = await session.scalar(select(Task.attempts).where(Task.id == before.json()["id"]))
    assert attempts == 1


REDIS_START = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379", "--save", "",
               "--appendonly", "no", "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/ci.log"]


@may_restart_services
async def test_redis_stopped_mid_load_fails_open_as_documented(make_deps, processes: Processes) -> None:
    from tests.test_rate_limit_shared import REDIS_URL, _redis_reachable

    if not _redis_reachable() or REDIS_URL != "redis://127.0.0.1:6379/0":
        pytest.skip("needs the local Redis at 127.0.0.1:6379 to stop and start")
    deps = await make_deps(run_worker=False)
    who = await new_customer(deps, credits=1000)
    processes.env.update({
        "SFUMATO_DATA_DIR": str(deps.settings.data_dir), "SFUMATO_SECRET_KEY": "test-secret",
        "SFUMATO_REDIS_URL": REDIS_URL, "SFUMATO_RATE_LIMIT_CREATE": "1000/minute",
        **({"SFUMATO_DATABASE_URL": str(deps.settings.database_url)} if deps.settings.database_url else {}),
    })
    urls = [processes.api(f"api{i}")[1] for i in range(2)]

    def create(url: str) -> int:
        return httpx.post(f"{url}/api/v1/tasks", json={"model": "qwen-image", "prompt": "x"},
                          headers=who.headers).status_code

    assert [create(u) for u in urls] == [202, 202]
    subprocess.run(["redis-cli", "-h", "127.0.0.1", "shutdown", "nosave"], check=False, capture_output=True)
    try:
        wait_until(lambda: not _redis_reachable(), 10)
        assert [create(u) for u in urls * 3] == [202] * 6
        assert all(httpx.get(f"{u}/readyz").status_code == 503 for u in urls)
    finally:
        subprocess.run(REDIS_START, check=True, capture_output=True)
    wait_until(_redis_reachable, 20)
    wait_until(lambda: all(httpx.get(f"{u}/readyz").status_code == 200 for u in urls), 20)
    assert "rate limit storage unavailable" in processes.log_text("api0") + processes.log_text("api1")
    assert (await books(deps, who.account_id))["kinds"]["reserve"] == 8
