"""Serving a fake on 127.0.0.1 with a free port (``tests.processes.listening_socket``), with fault
injection in front of it.

``FakeServer`` runs a Starlette app on uvicorn (h11, so a short body is a real protocol error on
the wire) in the test's own event loop. ``inject(fault, path=…, times=…)`` makes the next
matching requests fail in one of the ways an upstream fails:

- ``500`` / ``503``: a server error; ``429``: rate limited with ``Retry-After: 1``;
- ``timeout``: no answer until the fake is stopped;
- ``malformed``: HTTP 200 with JSON cut in the middle;
- ``truncated``: ``Content-Length`` promises more than is sent, then the connection closes;
- ``trickle``: HTTP 200 whose body arrives one byte every 50 ms, for as long as the client waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from PIL import Image
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.processes import listening_socket

FAULTS = ("500", "503", "429", "timeout", "malformed", "truncated", "trickle")


def image_bytes(width: int, height: int, fmt: str = "png") -> bytes:
    """A small-to-encode image of the exact size an upstream would make."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 120, 40)).save(buffer, {"png": "PNG", "jpeg": "JPEG",
                                                                    "webp": "WEBP"}[fmt])
    return buffer.getvalue()


@dataclass
class Fault:
    kind: str
    path: str
    times: int


@dataclass
class FaultInjector:
    """ASGI middleware: the next request whose path contains ``path`` gets the fault."""

    app: ASGIApp
    closing: asyncio.Event
    faults: list[Fault] = field(default_factory=list)
    served: list[str] = field(default_factory=list)
    """``METHOD path`` of every request, faulted or not, in order."""

    def take(self, path: str) -> str | None:
        for fault in self.faults:
            if fault.path in path:
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                return fault.kind
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.served.append(f"{scope['method']} {scope['path']}")
        kind = self.take(scope["path"])
        if kind is None:
            await self.app(scope, receive, send)
        else:
            await self.fail(kind, send)

    async def fail(self, kind: str, send: Send) -> None:
        if kind == "timeout":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.closing.wait(), 60)
            kind = "503"
        status = {"500": 500, "503": 503, "429": 429}.get(kind, 200)
        headers = [(b"content-type", b"application/json")]
        body = json.dumps({"error": {"message": f"injected {kind}"}}).encode()
        if kind == "429":
            headers.append((b"retry-after", b"1"))
        if kind == "malformed":
            body = b'{"data": [{"b64_json": "iVBO'
        if kind == "truncated":
            headers.append((b"content-length", b"5000"))
            body = b'{"data": ['
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if kind == "trickle":
            await self.trickle(send)
            return
        await send({"type": "http.response.body", "body": body})

    async def trickle(self, send: Send) -> None:
        for _ in range(1200):  # at most a minute; the fake's stop ends it sooner
            if self.closing.is_set():
                break
            await send({"type": "http.response.body", "body": b" ", "more_body": True})
            await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b""})


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the test process keeps its own signal handlers


class FakeServer:
    """Base of every fake: ``async with Fake(...) as fake`` serves it; ``fake.url`` is its base."""

    def __init__(self) -> None:
        self.closing = asyncio.Event()
        self.injector = FaultInjector(self.app(), self.closing)
        self.url = ""
        self.violations: list[str] = []
        """Requests the fake refused as the real API would (a test may expect some)."""

    def app(self) -> ASGIApp:
        raise NotImplementedError

    def inject(self, kind: str, *, path: str = "", times: int = 1) -> None:
        assert kind in FAULTS, kind
        self.injector.faults.append(Fault(kind, path, times))

    @property
    def served(self) -> list[str]:
        return self.injector.served

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1]

    def refuse(self, reason: str) -> str:
        self.violations.append(reason)
        return reason

    async def __aenter__(self) -> Any:
        config = uvicorn.Config(self.injector, http="h11", lifespan="off", log_level="critical",
                                timeout_graceful_shutdown=2)
        self._server = _Server(config)
        # Bound here (in SFUMATO_TEST_PORTS when set), so the port is ours until uvicorn listens.
        self._task = asyncio.create_task(self._server.serve(sockets=[listening_socket()]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.005)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.closing.set()
        self._server.should_exit = True
        await self._task


@contextlib.asynccontextmanager
async def running(fake: FakeServer) -> AsyncIterator[Any]:
    async with fake:
        yield fake
