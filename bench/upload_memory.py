"""Server memory while many clients upload 10 MB images at once, and upload throughput.

Starts `sfumato serve` on loopback, samples its RSS from /proc every 10 ms while `--clients`
concurrent clients each upload a ~10 MB PNG `--rounds` times, stops the server, prints a table.

    .venv/bin/python bench/upload_memory.py --clients 20 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

import httpx
from PIL import Image

CLI = [sys.executable, "-m", "sfumato.cli"]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def noise_png(limit: int) -> bytes:
    side = 1800
    while True:
        buffer = io.BytesIO()
        Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buffer, "PNG", compress_level=1)
        if len(buffer.getvalue()) <= limit:
            return buffer.getvalue()
        side -= 20


async def upload_all(url: str, key: str, data: bytes, clients: int, rounds: int) -> float:
    async def one(http: httpx.AsyncClient) -> None:
        for _ in range(rounds):
            response = await http.post(f"{url}/api/v1/files", files={"file": ("noise.png", data, "image/png")},
                                       headers={"Authorization": f"Bearer {key}"})
            response.raise_for_status()

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=120) as http:
        await asyncio.gather(*(one(http) for _ in range(clients)))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    opts = parser.parse_args()
    data = noise_png(10 * 1024 * 1024)
    env = {**os.environ, "SFUMATO_DATA_DIR": tempfile.mkdtemp(prefix="sfumato-upload-")}
    env.pop("SFUMATO_DATABASE_URL", None)
    key = json.loads(subprocess.run([*CLI, "accounts", "create", "bench", "--json"], env=env,
                                    capture_output=True, text=True, check=True).stdout)["api_key"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([*CLI, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        baseline = rss_mb(server.pid)
        peak, done = baseline, threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, rss_mb(server.pid))
                time.sleep(0.01)

        sampler = threading.Thread(target=sample)
        sampler.start()
        seconds = asyncio.run(upload_all(url, key, data, opts.clients, opts.rounds))
        done.set()
        sampler.join()
    finally:
        server.terminate()
        server.wait(timeout=30)
    count = opts.clients * opts.rounds
    print("| clients | uploads | file MB | RSS before MB | RSS peak MB | growth MB | uploads/s | MB/s |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {opts.clients} | {count} | {len(data) / 2**20:.1f} | {baseline:.0f} | {peak:.0f} | {peak - baseline:.0f} "
          f"| {count / seconds:.1f} | {count * len(data) / 2**20 / seconds:.0f} |")


if __name__ == "__main__":
    main()
