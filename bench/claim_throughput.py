"""Claim throughput of the fair claim (``worker/lease.py``: accounts take turns, caps, priority,
deadlines) against the claim it replaced (oldest first, one ``ORDER BY created_at``), on the
same queued rows in one run: a queue of ``--tasks`` tasks spread over ``--accounts`` accounts is
drained by claims of ``--batch`` (a worker's free slots), timing each claim; then every task is
put back in the queue and the other claim drains it. SQLite, and PostgreSQL if reachable.

    .venv/bin/python bench/claim_throughput.py --accounts 1000 --tasks 10000 --batch 64

The claim's cost grows with the queue (each claim ranks every queued task); the question this
answers is by how much, next to what the hot paths need (a few hundred claims a second at most:
one per batch of free slots).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from harness import scratch
from sqlalchemy import insert, update

from sfumato.app import build_deps
from sfumato.db import migrate
from sfumato.db.driver import sqlite_sql
from sfumato.db.models import Account, Task
from sfumato.deps import Deps
from sfumato.settings import Settings
from sfumato.worker import lease

OLDEST_PG = """
WITH claimed AS (
    UPDATE tasks SET status = 'running', lease_token = $2, lease_expires_at = $3, attempts = attempts + 1,
        started_at = $4, updated_at = $4
    WHERE id IN (SELECT id FROM tasks WHERE status = 'queued' ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED)
      AND status = 'queued'
    RETURNING id, account_id, model, prompt, params, reference_file_ids, reserved_credits, attempts, request_id,
              upstream_state
)
SELECT claimed.*, pg_notify('sfumato_task_changed', claimed.id) FROM claimed
"""
"""The claim before fair dispatch (commit 43c12bd), as the baseline. Rows get each account's
turns in round-robin (``queue_key``), as creates would give them."""
OLDEST_SQLITE = sqlite_sql("""
UPDATE tasks SET status = 'running', lease_token = $2, lease_expires_at = $3, attempts = attempts + 1,
    started_at = $4, updated_at = $4
WHERE id IN (SELECT id FROM tasks WHERE status = 'queued' ORDER BY created_at LIMIT $1) AND status = 'queued'
RETURNING id, account_id, model, prompt, params, reference_file_ids, reserved_credits, attempts, request_id,
          upstream_state
""")


async def oldest_first(deps: Deps, limit: int, now: datetime) -> int:
    args = (limit, "bench", now + deps.lease, now)
    if deps.db.is_sqlite:
        from sfumato.db.driver import sqlite_value

        def rows(conn: Any) -> list[Any]:
            return list(conn.execute(OLDEST_SQLITE, tuple(sqlite_value(a) for a in args)).fetchall())

        return len(await deps.db.driver.write(rows))
    return len(await deps.db.driver.fetch(OLDEST_PG, *args))


async def fair(deps: Deps, limit: int, now: datetime) -> int:
    return len(await lease.claim_through(deps.db.driver, limit, now, deps.lease))


async def fair_capped(deps: Deps, limit: int, now: datetime) -> int:
    """With ``SFUMATO_ACCOUNT_CONCURRENCY=1000`` (a cap that ranks the queue's head but never binds)."""
    return len(await lease.claim_through(deps.db.driver, limit, now, deps.lease, cap=1000))


async def fill(deps: Deps, accounts: int, tasks: int) -> None:
    now = datetime.now(UTC)
    async with deps.db.write() as session:
        await session.execute(insert(Account), [
            {"id": f"acct_{i:05d}", "name": f"a{i}", "balance": 0, "created_at": now} for i in range(accounts)])
        rows = [{"id": f"task_{i:07d}", "account_id": f"acct_{i % accounts:05d}", "model": "qwen-image",
                 "prompt": "bench", "params": {}, "reference_file_ids": [], "status": "queued",
                 "reserved_credits": 4, "final_credits": 0, "attempts": 0, "cancel_requested": False,
                 "created_at": now + timedelta(microseconds=i * 1000), "updated_at": now, "priority": "normal",
                 "queue_key": i // accounts + 1}
                for i in range(tasks)]
        for start in range(0, len(rows), 5000):
            await session.execute(insert(Task), rows[start:start + 5000])


async def requeue_all(deps: Deps) -> None:
    async with deps.db.write() as session:
        await session.execute(update(Task).values(status="queued", lease_token=None, lease_expires_at=None,
                                                  started_at=None, attempts=0))


async def drain(deps: Deps, claim: Any, batch: int) -> dict[str, float]:
    times, taken = [], 0
    began = time.perf_counter()
    while True:
        start = time.perf_counter()
        got = await claim(deps, batch, datetime.now(UTC))
        times.append(time.perf_counter() - start)
        if not got:
            break
        taken += got
    elapsed = time.perf_counter() - began
    times.sort()
    return {"tasks": taken, "claims": len(times), "seconds": round(elapsed, 3),
            "tasks_per_s": round(taken / elapsed), "claim_p50_ms": round(statistics.median(times) * 1000, 2),
            "claim_max_ms": round(times[-1] * 1000, 2),
            "first_claim_ms": None}


async def measure(backend: str, accounts: int, tasks: int, batch: int) -> list[dict[str, Any]]:
    results = []
    async with scratch(backend, "claim") as (data_dir, database_url):
        deps = build_deps(Settings(data_dir=data_dir, database_url=database_url, run_worker=False,
                                   secret_key="bench"))
        try:
            await migrate.upgrade(deps.db)
            await fill(deps, accounts, tasks)
            for name, claim in (("oldest first (before)", oldest_first), ("fair (now)", fair),
                                ("fair, capped", fair_capped)):
                await requeue_all(deps)
                start = time.perf_counter()
                await claim(deps, batch, datetime.now(UTC))  # the first claim, on a full queue
                first = (time.perf_counter() - start) * 1000
                row = await drain(deps, claim, batch)
                row["first_claim_ms"] = round(first, 2)
                results.append({"backend": backend, "claim": name, "accounts": accounts, "queued": tasks,
                                "batch": batch, **row})
        finally:
            await deps.providers.aclose()
            await deps.db.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=10000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--json-out")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for backend in args.backends.split(","):
        try:
            rows += asyncio.run(measure(backend, args.accounts, args.tasks, args.batch))
        except OSError as exc:
            print(f"{backend}: skipped ({exc})")
    print(f"{'backend':9} {'claim':22} {'accounts':>8} {'queued':>7} {'first ms':>9} {'p50 ms':>8} "
          f"{'max ms':>8} {'tasks/s':>8}")
    for r in rows:
        print(f"{r['backend']:9} {r['claim']:22} {r['accounts']:8} {r['queued']:7} {r['first_claim_ms']:9} "
              f"{r['claim_p50_ms']:8} {r['claim_max_ms']:8} {r['tasks_per_s']:8}")
    if args.json_out:
        with open(args.json_out, "w") as out:
            json.dump(rows, out, indent=2)


if __name__ == "__main__":
    main()
