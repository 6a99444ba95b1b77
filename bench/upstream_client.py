"""httpx vs aiohttp as the client sfumato uses to call upstreams, against a loopback fake.

The fake runs in a child process (its own core) and answers keep-alive HTTP/1.1 from a bare
asyncio protocol, so the server is never the bottleneck. Each row sends a fixed number of
requests with a fixed concurrency through one shared client and reports requests/s and the
client's CPU time per request (what a worker process really spends). Shapes:

- ``json``: a POST of 300 B JSON answered by 300 B JSON (a submit or a status poll);
- ``image``: a GET answered by a 1 MiB body read in chunks (an output download).

Everything is bounded: a fixed request count per row and a 120 s deadline for the whole run;
the child is terminated at the end.

    .venv/bin/python bench/upstream_client.py --requests 4000 --concurrency 1 16 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp
import httpx

SMALL = json.dumps({"status": "IN_PROGRESS", "request_id": "r" * 36, "logs": [], "pad": "x" * 180}).encode()
BIG = os.urandom(1024 * 1024)


class _Fake(asyncio.Protocol):
    """A minimal HTTP/1.1 responder: reads one request head (and its declared body), answers."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, rest = self.buffer.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(rest) < length:
                return
            self.buffer = rest[length:]
            body = BIG if head.startswith(b"GET /image") else SMALL
            kind = b"application/octet-stream" if body is BIG else b"application/json"
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: " + kind + b"\r\nContent-Length: "
                                 + str(len(body)).encode() + b"\r\n\r\n" + body)


def _serve(sock: socket.socket) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Fake, sock=sock)
        async with server:
            await asyncio.sleep(300)  # the parent terminates us long before

    asyncio.run(main())


async def _run(call: Callable[[], Awaitable[int]], total: int, concurrency: int) -> tuple[float, float]:
    remaining = [total]

    async def one_client() -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            await call()

    await call()  # warm the connection pool
    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    return time.perf_counter() - wall, time.process_time() - cpu


async def bench_httpx(base: str, shape: str, total: int, concurrency: int) -> tuple[float, float]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits) as client:
        async def call() -> int:
            if shape == "json":
                response = await client.post("/submit", content=SMALL, headers={"Content-Type": "application/json"})
                return len(response.json())
            size = 0
            async with client.stream("GET", "/image") as response:
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
            return size

        return await _run(call, total, concurrency)


async def bench_aiohttp(base: str, shape: str, total: int, concurrency: int) -> tuple[float, float]:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base_url=base, connector=connector) as client:
        async def call() -> int:
            if shape == "json":
                async with client.post("/submit", data=SMALL, headers={"Content-Type": "application/json"}) as r:
                    return len(await r.json())
            size = 0
            async with client.get("/image") as response:
                async for chunk in response.content.iter_chunked(65536):
                    size += len(chunk)
            return size

        return await _run(call, total, concurrency)


async def main(args: argparse.Namespace) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    child = multiprocessing.get_context("fork").Process(target=_serve, args=(sock,), daemon=True)
    child.start()
    print(f"Python {sys.version.split()[0]}, httpx {httpx.__version__}, aiohttp {aiohttp.__version__}")
    print("| client | shape | conc. | requests | req/s | client CPU µs/req |")
    print("|---|---|---|---|---|---|")
    try:
        async with asyncio.timeout(args.deadline):
            for shape in ("json", "image"):
                total = args.requests if shape == "json" else max(50, args.requests // 10)
                for concurrency in args.concurrency:
                    for name, bench in (("httpx", bench_httpx), ("aiohttp", bench_aiohttp)):
                        wall, cpu = await bench(base, shape, total, concurrency)
                        print(f"| {name} | {shape} | {concurrency} | {total} | {total / wall:.0f} | "
                              f"{cpu / total * 1e6:.0f} |", flush=True)
    finally:
        child.terminate()
        child.join(5)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--deadline", type=float, default=120.0)
    asyncio.run(main(parser.parse_args()))
