"""Task creation and polling throughput against the ceiling (a bare Starlette endpoint).

Starts each server on loopback, drives it with wrk for a bounded time at each concurrency,
stops what it started and prints a table: requests per second, latency, non-2xx answers and
the server's CPU time per request (user + system of its process tree during the run, divided by
the requests wrk completed). Needs `wrk` (Debian: apt-get install wrk).

    .venv/bin/python bench/api_throughput.py --duration 10 --backends sqlite,postgres

``--reps N`` repeats every measurement N times (rounds over every case) and reports medians;
``--json-out FILE`` also writes the medians as JSON; ``--log-dir DIR`` keeps each server's
output there (default: discarded).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx
from harness import cpu_seconds, free_port

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get("SFUMATO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BODY = json.dumps({"model": "qwen-image", "prompt": "a lighthouse at dusk", "params": {"output_format": "jpeg"}})


@contextmanager
def server(args: list[str], env: dict[str, str], health: str, log: Path | None = None) -> Iterator[int]:
    """Start ``args``, wait until ``health`` answers, yield its PID; stop it afterwards."""
    out: IO[bytes] | int = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        for _ in range(600):
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode} before answering: {args} (log: {log})")
            try:
                if httpx.get(health, timeout=1).status_code < 500:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        else:
            raise RuntimeError(f"server did not start: {args} (log: {log})")
        yield proc.pid
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} during the run: {args} (log: {log})")
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if not isinstance(out, int):
            out.close()


def wrk(url: str, connections: int, duration: int, headers: dict[str, str], body: str | None,
        pid: int | None = None, lua: str | None = None) -> dict[str, float]:
    """One wrk run: a POST of ``body`` (GET if ``None``) with ``headers``, or the ``lua`` script."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        if lua is not None:
            script.write(lua)
        if body is not None:
            script.write(f"wrk.method = 'POST'\nwrk.body = {json.dumps(body)}\n")
        for key, value in headers.items():
            script.write(f"wrk.headers[{json.dumps(key)}] = {json.dumps(value)}\n")
    threads = min(2, connections)
    cpu0 = cpu_seconds(pid) if pid else 0.0
    try:
        out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "30s",
                              "--latency", "-s", script.name, url], capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script.name)
    cpu1 = cpu_seconds(pid) if pid else 0.0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))

    def pct(p: str) -> float:
        value, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"rps": rps, "p50": pct("50"), "p99": pct("99"), "requests": float(requests),
            "non2xx": float(errors.group(1)) if errors else 0.0,
            "socket_errors": float(sum(int(g) for g in sockets.groups())) if sockets else 0.0,
            "cpu_ms_per_req": (cpu1 - cpu0) * 1000 / requests if pid and requests else float("nan")}


def psql(sql: str, check: bool = True) -> None:
    subprocess.run(["psql", PG_ADMIN, "-qc", sql], check=check,
                   env={**os.environ, "PGOPTIONS": "-c client_min_messages=warning"})


def make_database(backend: str) -> str | None:
    if backend == "sqlite":
        return None
    name = f"sfumato_bench_{os.getpid()}"
    psql(f'DROP DATABASE IF EXISTS "{name}"')
    psql(f'CREATE DATABASE "{name}"')
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


Row = tuple[str, int, dict[str, float]]


def sfumato_rows(backend: str, concurrencies: list[int], duration: int, reps: int,
                 log_dir: Path | None) -> list[Row]:
    data_dir = Path(tempfile.mkdtemp(prefix="sfumato-bench-"))
    env = {**os.environ, "SFUMATO_DATA_DIR": str(data_dir), "SFUMATO_RATE_LIMIT_CREATE": "100000000/minute"}
    env.pop("SFUMATO_DATABASE_URL", None)
    url = None
    rows = []
    try:
        url = make_database(backend)
        if url:
            env["SFUMATO_DATABASE_URL"] = url
        cli = [sys.executable, "-m", "sfumato.cli"]
        created = subprocess.run([*cli, "accounts", "create", "bench", "--credits", "1000000000", "--json"],
                                 env=env, capture_output=True, text=True, check=True).stdout
        headers = {"Authorization": f"Bearer {json.loads(created)['api_key']}", "Content-Type": "application/json"}
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = log_dir / f"api_throughput-sfumato-{backend}.log" if log_dir else None
        with server([*cli, "serve", "--no-worker", "--host", "127.0.0.1", "--port", str(port)], env,
                    f"{base}/healthz", log) as pid:
            first = httpx.post(f"{base}/api/v1/tasks", content=BODY, headers=headers)
            first.raise_for_status()
            task_id = first.json()["id"]
            httpx.get(f"{base}/api/v1/tasks/{task_id}", headers=headers).raise_for_status()
            for _ in range(reps):
                for c in concurrencies:
                    rows.append((f"create ({backend})", c,
                                 wrk(f"{base}/api/v1/tasks", c, duration, headers, BODY, pid)))
                    rows.append((f"poll ({backend})", c,
                                 wrk(f"{base}/api/v1/tasks/{task_id}", c, duration, headers, None, pid)))
    finally:
        if url:
            psql(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)', check=False)
        shutil.rmtree(data_dir, ignore_errors=True)
    return rows


def ceiling_rows(concurrencies: list[int], duration: int, reps: int, log_dir: Path | None) -> list[Row]:
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", "ceiling_app:app", "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning", "--app-dir", str(ROOT / "bench"), "--no-access-log"]
    url = f"http://127.0.0.1:{port}/task"
    log = log_dir / "api_throughput-ceiling.log" if log_dir else None
    rows = []
    with server(args, dict(os.environ), url, log) as pid:
        for _ in range(reps):
            for c in concurrencies:
                rows.append(("ceiling POST", c, wrk(url, c, duration, {}, BODY, pid)))
                rows.append(("ceiling GET", c, wrk(url, c, duration, {}, None, pid)))
    return rows


def medians(rows: list[Row]) -> list[Row]:
    """One row per (name, concurrency), each figure the median over repetitions (sums for counts)."""
    grouped: dict[tuple[str, int], list[dict[str, float]]] = defaultdict(list)
    for name, c, r in rows:
        grouped[(name, c)].append(r)
    out = []
    for (name, c), rs in grouped.items():
        merged = {k: statistics.median(r[k] for r in rs) for k in ("rps", "p50", "p99", "cpu_ms_per_req")}
        merged.update({k: sum(r[k] for r in rs) for k in ("requests", "non2xx", "socket_errors")})
        merged.update(reps=len(rs), rps_min=min(r["rps"] for r in rs), rps_max=max(r["rps"] for r in rs))
        out.append((name, c, merged))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--concurrency", default="16,64")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--log-dir", type=Path)
    opts = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")
    levels = [int(c) for c in opts.concurrency.split(",")]
    if opts.log_dir:
        opts.log_dir.mkdir(parents=True, exist_ok=True)
    rows = ceiling_rows(levels, opts.duration, opts.reps, opts.log_dir)
    for backend in opts.backends.split(","):
        rows += sfumato_rows(backend, levels, opts.duration, opts.reps, opts.log_dir)
    rows = medians(rows)
    ceiling = {(name.split()[1], c): r["rps"] for name, c, r in rows if name.startswith("ceiling")}
    if opts.json_out:
        opts.json_out.write_text(json.dumps([{"name": n, "conc": c, **r} for n, c, r in rows], indent=1))
    print("| what | conc. | req/s | % of ceiling | p50 ms | p99 ms | non-2xx | server CPU ms/req |\n"
          "|---|---|---|---|---|---|---|---|")
    for name, c, r in rows:
        method = "GET" if name.startswith(("poll", "ceiling GET")) else "POST"
        share = 100 * r["rps"] / ceiling[(method, c)]
        cells = [name, c, f"{r['rps']:.0f}", f"{share:.0f} %", f"{r['p50']:.1f}", f"{r['p99']:.1f}",
                 f"{r['non2xx'] + r['socket_errors']:.0f}", f"{r['cpu_ms_per_req']:.2f}"]
        print("| " + " | ".join(str(cell) for cell in cells) + " |")


if __name__ == "__main__":
    main()
