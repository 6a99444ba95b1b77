"""The OpenAI-compatible generation path through sfumato against the same fake upstream called
directly: the latency the gateway adds and the throughput it loses, with the upstream answering
at once and after 1 s.

The fake (tests/upstreams/openai.py, answering one pre-drawn 1024x1024 PNG) runs in its own
process; ``sfumato serve`` (SQLite, embedded worker) routes ``gpt-image-1-5`` to it through the
routing file. Both paths get the same JSON request from the same httpx client, at a fixed
concurrency, for a fixed number of requests.

    .venv/bin/python bench/openai_path.py --requests 200 --concurrency 8 --delays 0 1000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import yaml
from harness import free_port

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
CLI = [sys.executable, "-m", "sfumato.cli"]
KEY = "sk-bench-upstream"


def serve_fake(port: int, delay: float) -> None:
    from starlette.responses import JSONResponse
    from tests.upstreams.openai import FakeOpenAI

    class Fake(FakeOpenAI):
        def __init__(self) -> None:
            super().__init__(key=KEY)
            self._cached: dict[str, JSONResponse] = {}

        def answer(self, body: dict[str, Any]) -> JSONResponse:
            key = json.dumps(body, sort_keys=True)
            if key not in self._cached:
                self._cached[key] = super().answer(body)
            return self._cached[key]

        async def generations(self, request: Any) -> JSONResponse:
            await asyncio.sleep(delay)
            return await super().generations(request)

    uvicorn.run(Fake().injector, host="127.0.0.1", port=port, log_level="critical", lifespan="off")


async def wait_up(url: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            try:
                await client.get(url)
                return
            except httpx.HTTPError:
                await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not start")


async def load(url: str, headers: dict[str, str], total: int, concurrency: int) -> tuple[float, list[float]]:
    body = {"model": "gpt-image-1.5", "prompt": "a lighthouse at dusk", "size": "1024x1024", "quality": "medium"}
    latencies: list[float] = []
    left = iter(range(total))

    async def one_client(client: httpx.AsyncClient) -> None:
        for _ in left:
            started = time.perf_counter()
            answer = await client.post(url, json=body, headers=headers)
            answer.raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)

    async with httpx.AsyncClient(timeout=120) as client:
        began = time.perf_counter()
        await asyncio.gather(*(one_client(client) for _ in range(concurrency)))
        return total / (time.perf_counter() - began), latencies


async def run(total: int, concurrency: int, delay_ms: int) -> list[tuple[str, float, list[float]]]:
    fake_port, port = free_port(), free_port()
    fake = multiprocessing.Process(target=serve_fake, args=(fake_port, delay_ms / 1000), daemon=True)
    fake.start()
    data_dir = tempfile.mkdtemp(prefix="sfumato-openai-")
    routes = Path(data_dir) / "routes.yaml"
    routes.write_text(yaml.safe_dump({"models": {"gpt-image-1-5": [{
        "provider": "openai", "upstream_model": "gpt-image-1.5", "base_url": f"http://127.0.0.1:{fake_port}/v1",
        "credentials_env": "BENCH_OPENAI_KEY", "timeout_seconds": 60}]}}))
    env = {**os.environ, "SFUMATO_DATA_DIR": data_dir, "SFUMATO_SECRET_KEY": "bench",
           "SFUMATO_ROUTES_FILE": str(routes), "BENCH_OPENAI_KEY": KEY, "SFUMATO_RATE_LIMIT_CREATE": "100000000/minute"}
    key = json.loads(subprocess.run([*CLI, "accounts", "create", "bench", "--credits", "100000000", "--json"],
                                    env=env, capture_output=True, text=True, check=True).stdout)["api_key"]
    server = subprocess.Popen([*CLI, "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_up(f"http://127.0.0.1:{fake_port}/")
        await wait_up(f"http://127.0.0.1:{port}/healthz")
        direct = f"http://127.0.0.1:{fake_port}/v1/images/generations"
        gateway = f"http://127.0.0.1:{port}/v1/images/generations"
        await load(direct, {"Authorization": f"Bearer {KEY}"}, 10, 2)  # warm up both
        await load(gateway, {"Authorization": f"Bearer {key}"}, 10, 2)
        rows = []
        for name, url, auth in (("direct", direct, KEY), ("sfumato", gateway, key)):
            rate, latencies = await load(url, {"Authorization": f"Bearer {auth}"}, total, concurrency)
            rows.append((name, rate, latencies))
        return rows
    finally:
        server.terminate()
        server.wait(timeout=30)
        fake.terminate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--delays", type=int, nargs="+", default=[0, 1000])
    opts = parser.parse_args()
    print("| upstream delay ms | path | requests | concurrency | req/s | p50 ms | p99 ms | added p50 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for delay in opts.delays:
        rows = asyncio.run(run(opts.requests, opts.concurrency, delay))
        base = statistics.median(rows[0][2])
        for name, rate, latencies in rows:
            p50, p99 = statistics.median(latencies), statistics.quantiles(latencies, n=100)[98]
            added = "" if name == "direct" else f"{p50 - base:.1f}"
            print(f"| {delay} | {name} | {opts.requests} | {opts.concurrency} | {rate:.1f} | {p50:.1f} | {p99:.1f} "
                  f"| {added} |", flush=True)


if __name__ == "__main__":
    main()
