"""Creates of one account against creates spread over many, on PostgreSQL (hot-path goal 4).

Every create debits its account's row. If that row stayed locked across a conversation (debit,
insert, ledger entry, notify, commit as separate round trips), the creates of one account would
queue behind each other while creates of 64 accounts would not. The create is one statement,
so the row is held for that statement only: both cases should run at the same rate.

Starts ``sfumato serve --no-worker`` on a fresh PostgreSQL database (``SFUMATO_TEST_POSTGRES_URL``,
default the local server), makes ``--accounts`` accounts with a key each, and drives
``POST /api/v1/tasks`` with wrk at ``-c`` connections: once with every request from the first
account, once with the requests taking the accounts' keys in turn. Rounds alternate; medians.

    .venv/bin/python bench/account_spread.py --accounts 64 --concurrency 64 --duration 10 --reps 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from api_throughput import BODY, make_database, psql, server, wrk
from harness import free_port


def _script(keys: list[str]) -> str:
    """A wrk script sending the create with the keys in turn (one key: always that one)."""
    listed = ", ".join(json.dumps(f"Bearer {k}") for k in keys)
    return f"""
local keys = {{{listed}}}
local n = 0
request = function()
  n = n + 1
  local headers = {{["Authorization"] = keys[(n % #keys) + 1], ["Content-Type"] = "application/json"}}
  return wrk.format("POST", nil, headers, {json.dumps(BODY)})
end
"""


def drive(url: str, keys: list[str], connections: int, duration: int, pid: int) -> dict[str, float]:
    run = wrk(url, connections, duration, {}, None, pid, lua=_script(keys))
    return {"rps": run["rps"], "p50": run["p50"], "errors": run["non2xx"] + run["socket_errors"],
            "cpu_ms_per_req": run["cpu_ms_per_req"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--log-dir", type=Path)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")
    data_dir = Path(tempfile.mkdtemp(prefix="sfumato-spread-"))
    env = {**os.environ, "SFUMATO_DATA_DIR": str(data_dir), "SFUMATO_RATE_LIMIT_CREATE": "100000000/minute"}
    url = make_database("postgres")
    assert url is not None
    env["SFUMATO_DATABASE_URL"] = url
    cli = [sys.executable, "-m", "sfumato.cli"]
    results: dict[str, list[dict[str, float]]] = {"one account": [], f"{args.accounts} accounts": []}
    try:
        keys = [json.loads(subprocess.run([*cli, "accounts", "create", f"spread-{i}", "--credits", "1000000000",
                                           "--json"], env=env, capture_output=True, text=True, check=True
                                          ).stdout)["api_key"] for i in range(args.accounts)]
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = args.log_dir / "account_spread-sfumato.log" if args.log_dir else None
        if args.log_dir:
            args.log_dir.mkdir(parents=True, exist_ok=True)
        with server([*cli, "serve", "--no-worker", "--host", "127.0.0.1", "--port", str(port)], env,
                    f"{base}/healthz", log) as pid:
            drive(f"{base}/api/v1/tasks", keys, args.concurrency, 2, pid)  # warm every key's cache entry
            for _ in range(args.reps):
                results["one account"].append(drive(f"{base}/api/v1/tasks", keys[:1], args.concurrency,
                                                     args.duration, pid))
                results[f"{args.accounts} accounts"].append(drive(f"{base}/api/v1/tasks", keys, args.concurrency,
                                                                  args.duration, pid))
    finally:
        psql(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)', check=False)
        shutil.rmtree(data_dir, ignore_errors=True)
    rows = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in results.items()}
    print(f"| creates on PostgreSQL, c={args.concurrency} | req/s | p50 ms | errors | server CPU ms/req |")
    print("|---|---:|---:|---:|---:|")
    for name, row in rows.items():
        print(f"| {name} | {row['rps']:,.0f} | {row['p50']:.1f} | {row['errors']:.0f} | {row['cpu_ms_per_req']:.3f} |")
    one, many = rows["one account"]["rps"], rows[f"{args.accounts} accounts"]["rps"]
    print(f"\none account / {args.accounts} accounts = {one / many:.2f} (medians of {args.reps} alternating rounds, "
          f"{args.duration} s each)")
    if args.json_out:
        args.json_out.write_text(json.dumps({"accounts": args.accounts, "concurrency": args.concurrency,
                                             "duration": args.duration, "reps": args.reps, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
