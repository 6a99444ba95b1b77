"""One worker process, a provider that takes 2 s per image, 2,000 tasks already queued: how long
until all have ended, and the worker's peak RSS. Ideal: about 2 s plus overhead (every task
waits on its provider at the same time). Tasks are queued straight through the task service
before the worker starts, so creation speed does not count. Starts everything it needs on
loopback (a temporary SQLite file, or a fresh PostgreSQL database) and stops it.

Two providers: ``sandbox`` runs ``sfumato worker`` in its own process with the sandbox, which
draws and encodes every image (about 9 ms of CPU for a 512x512 JPEG here); ``fixed`` runs the
same ``Worker`` inside this process with a provider that sleeps and returns one pre-drawn
image, so only the gateway's own work per task is measured (output write, finishing
transaction, lease).

    .venv/bin/python bench/slow_tasks.py --tasks 2000 --latency-ms 2000 --backend sqlite postgres

``--json-out FILE`` also writes the rows as JSON; ``--log-dir DIR`` keeps the worker's output
there (default: discarded).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from harness import rss_mb, scratch
from sqlalchemy import func, select

from sfumato.accounts import service as accounts
from sfumato.app import build_deps
from sfumato.catalog import validate_task_request
from sfumato.db import migrate
from sfumato.db.database import Database
from sfumato.db.models import Task
from sfumato.providers.base import Job, OutputImage, Outputs
from sfumato.providers.registry import ProviderRegistry
from sfumato.providers.sandbox import render
from sfumato.settings import Settings
from sfumato.tasks import service
from sfumato.worker.loop import Worker

CLI = [sys.executable, "-m", "sfumato.cli"]
LOG_DIR: Path | None = None


async def queue_tasks(settings: Settings, total: int) -> None:
    deps = build_deps(settings)
    await migrate.upgrade(deps.db)
    request = validate_task_request({"model": "qwen-image", "prompt": "bench", "params": {
        "image_size": "square", "output_format": "jpeg"}}, deps.catalog, max_prompt_chars=100)
    async with deps.db.write() as session:
        account = await accounts.create_account(session, "bench", total * 10, deps.clock.now())
    for start in range(0, total, 500):
        async with deps.db.write() as session:
            for _ in range(min(500, total - start)):
                await service.create_task(session, account.id, request, deps.clock.now(),
                                          idempotency_window=deps.idempotency_window)
    await deps.db.dispose()


async def unfinished(db: Database) -> int:
    async with db.read() as session:
        return await session.scalar(select(func.count()).select_from(Task).where(
            Task.status.in_(("queued", "running")))) or 0


class FixedProvider:
    """Sleeps like an upstream, then returns one image drawn once up front."""

    name = "fixed"
    supports_cancel = True

    def __init__(self, seconds: float, image: OutputImage):
        self.seconds, self.image = seconds, image

    async def run(self, job: Job) -> Outputs:
        await asyncio.sleep(self.seconds)
        return Outputs([self.image], provider=self.name, sandbox=True)


async def in_process(settings: Settings, latency_ms: str, concurrency: int) -> tuple[float, float]:
    """The worker in this process with ``FixedProvider``: ``(seconds until all ended, peak RSS)``."""
    deps = build_deps(settings.model_copy(update={"worker_concurrency": concurrency}))
    job = Job("t", deps.catalog.get("qwen-image"), "bench", {"image_size": "square", "output_format": "jpeg"})  # type: ignore[arg-type]
    deps.providers = ProviderRegistry(FixedProvider(int(latency_ms) / 1000, render(job, [])))
    stop, peak = asyncio.Event(), 0.0
    began = time.perf_counter()
    running = asyncio.create_task(Worker(deps).run(stop))
    while await unfinished(deps.db):
        peak = max(peak, rss_mb(os.getpid()))
        await asyncio.sleep(0.1)
    elapsed = time.perf_counter() - began
    stop.set()
    await running
    await deps.db.dispose()
    return elapsed, peak


async def in_subprocess(settings: Settings, latency_ms: str, concurrency: int) -> tuple[float, float]:
    """``sfumato worker`` with the sandbox: ``(seconds until all ended, its peak RSS)``."""
    env = {**os.environ, "SFUMATO_DATA_DIR": str(settings.data_dir), "SFUMATO_SECRET_KEY": "bench",
           "SFUMATO_SANDBOX_LATENCY_MS": latency_ms, "SFUMATO_WORKER_CONCURRENCY": str(concurrency),
           **({"SFUMATO_DATABASE_URL": settings.database_url} if settings.database_url else {})}
    if not settings.database_url:
        env.pop("SFUMATO_DATABASE_URL", None)
    backend = "postgres" if settings.database_url else "sqlite"
    log = LOG_DIR / f"slow_tasks-worker-{backend}.log" if LOG_DIR else None
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    worker = subprocess.Popen([*CLI, "worker"], env=env, stdout=out, stderr=subprocess.STDOUT)
    began, peak = time.perf_counter(), 0.0
    db = Database(settings.resolved_database_url)
    try:
        while True:
            peak = max(peak, rss_mb(worker.pid))
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited with {worker.returncode} (log: {log})")
            if await unfinished(db) == 0:
                return time.perf_counter() - began, max(peak, rss_mb(worker.pid, "VmHWM"))
            await asyncio.sleep(0.1)
    finally:
        await db.dispose()
        if worker.poll() is None:
            worker.terminate()
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        if not isinstance(out, int):
            out.close()


async def statuses(db: Database) -> dict[str, int]:
    async with db.read() as session:
        rows = (await session.execute(select(Task.status, func.count()).group_by(Task.status))).all()
    return {str(getattr(status, "value", status)): count for status, count in rows}


async def run(backend: str, total: int, latency_ms: str, concurrency: int,
              provider: str) -> tuple[float, float, dict[str, int]]:
    """``(seconds until all ended, peak RSS MB, tasks per final status)``."""
    async with scratch(backend, "slow") as (data_dir, database_url):
        settings = Settings(data_dir=Path(data_dir), database_url=database_url, secret_key="bench")
        await queue_tasks(settings, total)
        measure = in_process if provider == "fixed" else in_subprocess
        elapsed, peak = await measure(settings, latency_ms, concurrency)
        db = Database(settings.resolved_database_url)
        try:
            ended = await statuses(db)
        finally:
            await db.dispose()
        return elapsed, peak, ended


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--latency-ms", default="2000")
    parser.add_argument("--concurrency", type=int, default=2000)
    parser.add_argument("--backend", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--provider", nargs="+", default=["fixed", "sandbox"])
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--log-dir", type=Path)
    opts = parser.parse_args()
    global LOG_DIR
    if opts.log_dir:
        opts.log_dir.mkdir(parents=True, exist_ok=True)
        LOG_DIR = opts.log_dir
    rows = []
    print("| provider | backend | tasks | latency ms | concurrency | all ended after s | worker peak RSS MB "
          "| ended as |")
    print("|---|---|---|---|---|---|---|---|")
    for provider in opts.provider:
        for backend in opts.backend:
            elapsed, peak, ended = asyncio.run(run(backend, opts.tasks, opts.latency_ms, opts.concurrency, provider))
            outcome = ", ".join(f"{n} {status}" for status, n in sorted(ended.items()))
            print(f"| {provider} | {backend} | {opts.tasks} | {opts.latency_ms} | {opts.concurrency} "
                  f"| {elapsed:.1f} | {peak:.0f} | {outcome} |", flush=True)
            rows.append({"provider": provider, "backend": backend, "tasks": opts.tasks,
                         "latency_ms": opts.latency_ms, "concurrency": opts.concurrency,
                         "drain_s": elapsed, "peak_rss_mb": peak, "statuses": ended})
            if opts.json_out:
                opts.json_out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
