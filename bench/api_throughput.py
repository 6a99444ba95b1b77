"""Task creation and polling throughput against the ceiling (a bare Starlette endpoint).

Starts each server on loopback, drives it with wrk for a bounded time at each concurrency,
stops what it started and prints a table. Needs `wrk` (Debian: apt-get install wrk).

    .venv/bin/python bench/api_throughput.py --duration 10 --backends sqlite,postgres
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
from harness import free_port

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get("SFUMATO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BODY = json.dumps({"model": "qwen-image", "prompt": "a lighthouse at dusk", "params": {"output_format": "jpeg"}})


@contextmanager
def server(args: list[str], env: dict[str, str], health: str):
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                if httpx.get(health, timeout=1).status_code < 500:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        else:
            raise RuntimeError(f"server did not start: {args}")
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def wrk(url: str, connections: int, duration: int, headers: dict[str, str], body: str | None) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        if body is not None:
            script.write(f"wrk.method = 'POST'\nwrk.body = {json.dumps(body)}\n")
        for key, value in headers.items():
            script.write(f"wrk.headers[{json.dumps(key)}] = {json.dumps(value)}\n")
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s", script.name, url],
                         capture_output=True, text=True, check=True).stdout
    os.unlink(script.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p: str) -> float:
        value, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50": pct("50"), "p99": pct("99"), "non2xx": float(errors.group(1)) if errors else 0.0}


def make_database(backend: str, data_dir: Path) -> str | None:
    if backend == "sqlite":
        return None
    name = f"sfumato_bench_{os.getpid()}"
    subprocess.run(["psql", PG_ADMIN, "-qc", f'DROP DATABASE IF EXISTS "{name}"'], check=True)
    subprocess.run(["psql", PG_ADMIN, "-qc", f'CREATE DATABASE "{name}"'], check=True)
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


def sfumato_rows(backend: str, concurrencies: list[int], duration: int) -> list[tuple[str, int, dict[str, float]]]:
    data_dir = Path(tempfile.mkdtemp(prefix="sfumato-bench-"))
    env = {**os.environ, "SFUMATO_DATA_DIR": str(data_dir), "SFUMATO_RATE_LIMIT_CREATE": "100000000/minute"}
    url = make_database(backend, data_dir)
    if url:
        env["SFUMATO_DATABASE_URL"] = url
    cli = [sys.executable, "-m", "sfumato.cli"]
    created = subprocess.run([*cli, "accounts", "create", "bench", "--credits", "1000000000", "--json"],
                             env=env, capture_output=True, text=True, check=True).stdout
    headers = {"Authorization": f"Bearer {json.loads(created)['api_key']}", "Content-Type": "application/json"}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    rows = []
    with server([*cli, "serve", "--no-worker", "--port", str(port)], env, f"{base}/healthz"):
        task_id = httpx.post(f"{base}/api/v1/tasks", content=BODY, headers=headers).json()["id"]
        for c in concurrencies:
            rows.append((f"create ({backend})", c, wrk(f"{base}/api/v1/tasks", c, duration, headers, BODY)))
            rows.append((f"poll ({backend})", c, wrk(f"{base}/api/v1/tasks/{task_id}", c, duration, headers, None)))
    if url:
        subprocess.run(["psql", PG_ADMIN, "-qc", f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'])
    shutil.rmtree(data_dir, ignore_errors=True)
    return rows


def ceiling_rows(concurrencies: list[int], duration: int) -> list[tuple[str, int, dict[str, float]]]:
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", "ceiling_app:app", "--port", str(port), "--log-level", "warning",
            "--app-dir", str(ROOT / "bench"), "--no-access-log"]
    with server(args, dict(os.environ), f"http://127.0.0.1:{port}/task"):
        return [("ceiling", c, wrk(f"http://127.0.0.1:{port}/task", c, duration, {}, BODY)) for c in concurrencies]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--concurrency", default="16,64")
    parser.add_argument("--backends", default="sqlite,postgres")
    opts = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")
    levels = [int(c) for c in opts.concurrency.split(",")]
    rows = ceiling_rows(levels, opts.duration)
    ceiling = {c: r["rps"] for _, c, r in rows}
    for backend in opts.backends.split(","):
        rows += sfumato_rows(backend, levels, opts.duration)
    print("| what | conc. | req/s | % of ceiling | p50 ms | p99 ms | non-2xx |\n|---|---|---|---|---|---|---|")
    for name, c, r in rows:
        share = 100 * r["rps"] / ceiling[c]
        cells = [name, c, f"{r['rps']:.0f}", f"{share:.0f} %", f"{r['p50']:.1f}", f"{r['p99']:.1f}",
                 f"{r['non2xx']:.0f}"]
        print("| " + " | ".join(str(cell) for cell in cells) + " |")


if __name__ == "__main__":
    main()
