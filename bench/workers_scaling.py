"""Task creations per second and create-to-start latency with 1, 2 and 4 worker processes
on PostgreSQL. One API process (no worker) takes the creates; the workers run a sandbox with
a fixed latency. Starts everything on loopback, stops what it started, prints a table.

    .venv/bin/python bench/workers_scaling.py --tasks 600 --workers 1,2,4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time

import asyncpg
import httpx
from harness import free_port

PG_ADMIN = os.environ.get("SFUMATO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
CLI = [sys.executable, "-m", "sfumato.cli"]


async def create_all(url: str, key: str, total: int, clients: int) -> float:
    numbers = iter(range(total))
    body = {"model": "qwen-image", "prompt": "bench", "params": {"image_size": "square", "output_format": "jpeg"}}

    async def loop(http: httpx.AsyncClient) -> None:
        for _ in numbers:
            response = await http.post(f"{url}/api/v1/tasks", json=body, headers={"Authorization": f"Bearer {key}"})
            response.raise_for_status()

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=60) as http:
        await asyncio.gather(*(loop(http) for _ in range(clients)))
    return total / (time.perf_counter() - started)


async def run(workers: int, tasks: int, clients: int, latency_ms: str) -> dict[str, float]:
    name = f"sfumato_scale_{os.getpid()}_{workers}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    await admin.execute(f'CREATE DATABASE "{name}"')
    db_url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    env = {**os.environ, "SFUMATO_DATABASE_URL": db_url, "SFUMATO_DATA_DIR": f"/tmp/{name}",
           "SFUMATO_RATE_LIMIT_CREATE": "100000000/minute", "SFUMATO_SANDBOX_LATENCY_MS": latency_ms,
           "SFUMATO_SECRET_KEY": "bench"}
    key = json.loads(subprocess.run([*CLI, "accounts", "create", "bench", "--credits", "100000000", "--json"],
                                    env=env, capture_output=True, text=True, check=True).stdout)["api_key"]
    port = free_port()
    procs = [subprocess.Popen([*CLI, "serve", "--no-worker", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    procs += [subprocess.Popen([*CLI, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
              for _ in range(workers)]
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                await asyncio.sleep(0.05)
        await asyncio.sleep(2)  # workers connected and listening
        began = time.perf_counter()
        rate = await create_all(url, key, tasks, clients)
        conn = await asyncpg.connect(db_url)
        while await conn.fetchval("SELECT count(*) FROM tasks WHERE status IN ('queued', 'running')"):
            await asyncio.sleep(0.1)
        drained = time.perf_counter() - began
        waits = [r[0] * 1000 for r in await conn.fetch(
            "SELECT EXTRACT(EPOCH FROM started_at - created_at)::float FROM tasks")]
        await conn.close()
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    cuts = statistics.quantiles(waits, n=100)
    return {"rate": rate, "p50": statistics.median(waits), "p99": cuts[98], "drained": drained}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=600)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--latency-ms", default="200")
    opts = parser.parse_args()
    print("| worker processes | creates/s | create-to-start p50 ms | p99 ms | all done after s |")
    print("|---|---|---|---|---|")
    for n in (int(w) for w in opts.workers.split(",")):
        r = asyncio.run(run(n, opts.tasks, opts.clients, opts.latency_ms))
        print(f"| {n} | {r['rate']:.0f} | {r['p50']:.1f} | {r['p99']:.1f} | {r['drained']:.1f} |")


if __name__ == "__main__":
    main()
