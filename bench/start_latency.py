"""Create-to-start latency (task created → provider called) on an unloaded server: one
``sfumato serve`` process (API and worker together, the embedded default) takes creates one at a
time, a few milliseconds apart, and the delay is read from the database (``started_at -
created_at``, both stamped by the server's clock). Under load the same delay is dominated by CPU
queueing; bench/workers_scaling.py measures that. SQLite, and PostgreSQL if it is reachable.

    .venv/bin/python bench/start_latency.py --tasks 300 --gap-ms 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys

import httpx
from harness import free_port, scratch
from sqlalchemy import select

from sfumato.db.database import Database
from sfumato.db.models import Task
from sfumato.settings import Settings

CLI = [sys.executable, "-m", "sfumato.cli"]


async def creates(url: str, key: str, tasks: int, gap_ms: float) -> None:
    body = {"model": "qwen-image", "prompt": "bench", "params": {"image_size": "square", "output_format": "jpeg"}}
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for _ in range(300):
            try:
                if (await client.get("/healthz")).status_code == 200:
                    break
            except httpx.HTTPError:
                await asyncio.sleep(0.05)
        await asyncio.sleep(1)
        for _ in range(tasks):
            (await client.post("/api/v1/tasks", json=body, headers={"Authorization": f"Bearer {key}"})
             ).raise_for_status()
            await asyncio.sleep(gap_ms / 1000)
        await asyncio.sleep(1)


async def measure(backend: str, tasks: int, gap_ms: float) -> list[float]:
    async with scratch(backend, "start") as (data_dir, database_url):
        env = {**os.environ, "SFUMATO_DATA_DIR": data_dir, "SFUMATO_SECRET_KEY": "bench",
               "SFUMATO_SANDBOX_LATENCY_MS": "50", "SFUMATO_RATE_LIMIT_CREATE": "100000000/minute",
               **({"SFUMATO_DATABASE_URL": database_url} if database_url else {})}
        key = json.loads(subprocess.run([*CLI, "accounts", "create", "bench", "--credits", "10000000", "--json"],
                                        env=env, capture_output=True, text=True, check=True).stdout)["api_key"]
        port = free_port()
        server = subprocess.Popen([*CLI, "serve", "--port", str(port)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            await creates(f"http://127.0.0.1:{port}", key, tasks, gap_ms)
        finally:
            server.terminate()
            server.wait(timeout=30)
        db = Database(Settings(data_dir=data_dir, database_url=database_url).resolved_database_url)
        async with db.read() as session:
            rows = (await session.execute(select(Task.created_at, Task.started_at))).all()
        await db.dispose()
        return [(s - c).total_seconds() * 1000 for c, s in rows if s is not None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--gap-ms", type=float, default=10.0)
    parser.add_argument("--backend", nargs="+", default=["sqlite", "postgres"])
    opts = parser.parse_args()
    print("| backend | tasks | gap ms | started | create-to-start p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|---|")
    for backend in opts.backend:
        waits = asyncio.run(measure(backend, opts.tasks, opts.gap_ms))
        cuts = statistics.quantiles(waits, n=100)
        print(f"| {backend} | {opts.tasks} | {opts.gap_ms:g} | {len(waits)} | {statistics.median(waits):.1f} "
              f"| {cuts[98]:.1f} | {max(waits):.1f} |", flush=True)


if __name__ == "__main__":
    main()
