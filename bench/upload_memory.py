"""Server memory while many clients upload 10 MB images at once, and upload throughput.

Starts `sfumato serve` (SQLite, local disk) on loopback and samples its RSS from /proc every
10 ms. After one warm-up upload (so lazily imported code is not counted as upload memory):

1. accepted: `--clients` concurrent clients each upload a ~9.3 MiB PNG of noise `--rounds` times;
2. over: the same, with a 12 MiB file (a declared length, as every ordinary client sends):
   refused at the 10 MiB limit, the rest read and dropped so each client gets its 413;
3. endless: the same clients each stream a 100 MiB body with no Content-Length: refused at the
   limit and cut off 16 MiB later (the connection is closed, the rest never read), so a client
   may see the connection reset before the 413 arrives: counted as status 0.

Then it checks that the spool directory is empty and that only the accepted files are stored,
stops the server and prints one table row per phase.

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
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
from harness import rss_mb
from PIL import Image

CLI = [sys.executable, "-m", "sfumato.cli"]
ENDLESS_PIECES = 400  # x 256 KiB = 100 MiB offered per endless request


def noise_png(limit: int) -> bytes:
    side = 1800
    while True:
        buffer = io.BytesIO()
        Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buffer, "PNG", compress_level=1)
        if len(buffer.getvalue()) <= limit:
            return buffer.getvalue()
        side -= 20


class Peak:
    """Samples a process's RSS in a thread until stopped; ``peak`` is the highest seen."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._done = pid, rss_mb(pid), threading.Event()
        self._thread = threading.Thread(target=self._sample)

    def _sample(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(0.01)

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()


async def endless_body() -> AsyncIterator[bytes]:
    yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n\r\n\x89PNG\r\n\x1a\n'
    for _ in range(ENDLESS_PIECES):
        yield b"\0" * (256 * 1024)


async def concurrently(clients: int, rounds: int, send: Callable[[httpx.AsyncClient], Awaitable[int]]) -> tuple[
        float, list[int]]:
    statuses: list[int] = []

    async def one(http: httpx.AsyncClient) -> None:
        for _ in range(rounds):
            statuses.append(await send(http))

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=120) as http:
        await asyncio.gather(*(one(http) for _ in range(clients)))
    return time.perf_counter() - started, statuses


def start_server(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str, str]:
    key = json.loads(subprocess.run([*CLI, "accounts", "create", "bench", "--json"], env=env,
                                    capture_output=True, text=True, check=True).stdout)["api_key"]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([*CLI, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    return server, url, key


def run_phases(server: subprocess.Popen[bytes], url: str, key: str, data: bytes, opts: argparse.Namespace) -> None:
    headers = {"Authorization": f"Bearer {key}"}

    async def accepted(http: httpx.AsyncClient) -> int:
        files = {"file": ("noise.png", data, "image/png")}
        return (await http.post(f"{url}/api/v1/files", files=files, headers=headers)).status_code

    async def over(http: httpx.AsyncClient) -> int:
        files = {"file": ("big.png", data[:16] + bytes(12 * 2**20), "image/png")}
        return (await http.post(f"{url}/api/v1/files", files=files, headers=headers)).status_code

    async def endless(http: httpx.AsyncClient) -> int:
        """The status, or 0 when the client saw the connection closed before the 413 arrived."""
        try:
            response = await http.post(f"{url}/api/v1/files", content=endless_body(), headers={
                **headers, "Content-Type": "multipart/form-data; boundary=b"})
        except httpx.TransportError:
            return 0
        return response.status_code

    asyncio.run(concurrently(1, 1, accepted))  # warm-up
    print("| phase | clients | requests | body MiB | RSS before MB | RSS peak MB | growth MB | requests/s "
          "| MiB/s | statuses |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    phases = (("accepted", accepted, len(data)), ("over", over, 12 * 2**20),
              ("endless", endless, ENDLESS_PIECES / 4 * 2**20))
    for name, send, size in phases:
        baseline = rss_mb(server.pid)
        with Peak(server.pid) as peak:
            seconds, statuses = asyncio.run(concurrently(opts.clients, opts.rounds, send))
        count = len(statuses)
        mib_s = f"{count * size / 2**20 / seconds:.0f}" if name == "accepted" else "-"
        print(f"| {name} | {opts.clients} | {count} | {size / 2**20:.1f} | {baseline:.0f} | {peak.peak:.0f} "
              f"| {peak.peak - baseline:.0f} | {count / seconds:.1f} | {mib_s} "
              f"| {', '.join(f'{s}x{statuses.count(s)}' for s in sorted(set(statuses)))} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    opts = parser.parse_args()
    data = noise_png(10 * 1024 * 1024)
    data_dir = Path(tempfile.mkdtemp(prefix="sfumato-upload-"))
    env = {**os.environ, "SFUMATO_DATA_DIR": str(data_dir)}
    env.pop("SFUMATO_DATABASE_URL", None)
    server, url, key = start_server(env)
    try:
        run_phases(server, url, key, data, opts)
    finally:
        server.terminate()
        server.wait(timeout=30)
    storage = data_dir / "storage"
    spooled = list((storage / ".incoming").iterdir())
    stored = [p for p in (storage / "uploads").rglob("*") if p.is_file()]
    print(f"\nspool files left: {len(spooled)}; stored uploads: {len(stored)} "
          f"(expected {opts.clients * opts.rounds + 1})")


if __name__ == "__main__":
    main()
