"""Create-to-start latency (task created → provider called) on an unloaded server: one
``sfumato serve`` process (API and worker together, the embedded default) takes creates one at a
time, a few milliseconds apart, and the delay is read from the database (``started_at -
created_at``, both stamped by the server's clock). Under load the same delay is dominated by CPU
queueing; bench/workers_scaling.py measures that. SQLite, and PostgreSQL if it is reachable.

    .venv/bin/python bench/start_latency.py --tasks 300 --gap-ms 10

``--json-out FILE`` also writes the rows as JSON; ``--log-dir DIR`` keeps the server's output
there (default: discarded).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import httpx
from harness import free_port, scratch
from sqlalchemy import select

from sfumato.db.database import Database
from sfumato.db.models import Task
from sfumato.settings import Settings

CLI = [sys.executable, "-m", "sfumato.cli"]
LOG_DIR: Path | None = None


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
        if not database_url:
            env.pop("SFUMATO_DATABASE_URL", None)
        key = json.loads(subprocess.run([*CLI, "accounts", "create", "bench", "--credits", "10000000", "--json"],
                                        env=env, capture_output=True, text=True, check=True).stdout)["api_key"]
        port = free_port()
        log = LOG_DIR / f"start_latency-sfumato-{backend}.log" if LOG_DIR else None
        out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
        server = subprocess.Popen([*CLI, "serve", "--host", "127.0.0.1", "--port", str(port)], env=env,
                                  stdout=out, stderr=subprocess.STDOUT)
        try:
            await creates(f"http://127.0.0.1:{port}", key, tasks, gap_ms)
            if server.poll() is not None:
                raise RuntimeError(f"the server exited with {server.returncode} (log: {log})")
        finally:
            if server.poll() is None:
                server.terminate()
                try:
                    server.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
            if not isinstance(out, int):
                out.close()
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
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--log-dir", type=Path)
    opts = parser.parse_args()
    global LOG_DIR
    if opts.log_dir:
        opts.log_dir.mkdir(parents=True, exist_ok=True)
        LOG_DIR = opts.log_dir
    rows = []
    print("| backend | tasks | gap ms | started | create-to-start p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|---|")
    for backend in opts.backend:
        waits = asyncio.run(measure(backend, opts.tasks, opts.gap_ms))
        # inclusive: with a few hundred samples the default method puts p99 above the maximum
        cuts = (statistics.quantiles(waits, n=100, method="inclusive") if len(waits) > 1
                else [waits[0] if waits else float("nan")] * 99)
        p50, top = (statistics.median(waits), max(waits)) if waits else (float("nan"), float("nan"))
        print(f"| {backend} | {opts.tasks} | {opts.gap_ms:g} | {len(waits)} | {p50:.1f} "
              f"| {cuts[98]:.1f} | {top:.1f} |", flush=True)
        rows.append({"backend": backend, "tasks": opts.tasks, "gap_ms": opts.gap_ms, "started": len(waits),
                     "p50_ms": p50, "p99_ms": cuts[98], "max_ms": top})
        if opts.json_out:
            opts.json_out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
