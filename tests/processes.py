"""Starting real sfumato processes (API servers, workers) for multi-process tests, and the ports
every test server listens on.

``SFUMATO_TEST_PORTS=20000-20999`` keeps the suite's servers (these processes, the upstream fakes,
moto) inside that range, for a machine whose other services own the rest; unset, the operating
system picks each port, as before.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import httpx

CLI = [sys.executable, "-m", "sfumato.cli"]


def port_range(spec: str | None) -> range | None:
    """``FIRST-LAST`` (both included) as a range; unset or empty: ``None``, the OS picks."""
    if not spec or not spec.strip():
        return None
    first, sep, last = spec.strip().partition("-")
    try:
        ports = range(int(first), int(last) + 1)
    except ValueError:
        ports = range(0)
    if not sep or not ports or ports.start < 1 or ports.stop > 65536:
        raise ValueError(f"SFUMATO_TEST_PORTS={spec!r}: expected FIRST-LAST within 1-65535, e.g. 20000-20999")
    return ports


TEST_PORTS = port_range(os.environ.get("SFUMATO_TEST_PORTS"))
_turn = itertools.count(random.randrange(65536))
"""Where the next search through the range starts: one further on each call, so the range is used
round and round rather than its first port over and over (and parallel runs start apart)."""
_handed_out: deque[int] = deque(maxlen=32)
"""Ports ``free_port`` gave, perhaps to a server not listening yet: the last 32 are given again only
when the range has no other free port."""


def _bound(port: int) -> socket.socket | None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no obstacle
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        return None
    return sock


def listening_socket(ports: range | None = TEST_PORTS) -> socket.socket:
    """A socket bound on 127.0.0.1 (not listening yet) for an in-process server: in ``ports`` when
    given, else on a port the OS picks. Binding is the reservation: no other process can take the
    port before the server listens on it."""
    start = next(_turn)
    candidates = [0] if ports is None else [ports[(start + i) % len(ports)] for i in range(len(ports))]
    for avoid in (set(_handed_out), set()):  # a port just handed out only when nothing else is free
        for port in candidates:
            if port not in avoid and (sock := _bound(port)) is not None:
                return sock
    where = f" in SFUMATO_TEST_PORTS ({ports.start}-{ports.stop - 1})" if ports else ""
    raise RuntimeError(f"no free port on 127.0.0.1{where}")


def free_port(ports: range | None = TEST_PORTS) -> int:
    """A port nothing listens on now, for a server started in another process."""
    with listening_socket(ports) as sock:
        port = int(sock.getsockname()[1])
    _handed_out.append(port)
    return port


class Processes:
    """Owns every process it starts, and kills them all at the end."""

    def __init__(self, env: dict[str, str], logs: Path):
        self.env = {**os.environ, **env}
        self.logs = logs
        self.started: list[subprocess.Popen[bytes]] = []

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen([*CLI, *args], env={**self.env, **(env or {})}, stdout=log,
                                    stderr=subprocess.STDOUT)
        self.started.append(proc)
        return proc

    def api(
        self, name: str, *, worker: bool = False, env: dict[str, str] | None = None, extra: tuple[str, ...] = ()
    ) -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        args = ["serve", "--port", str(port), *extra] + ([] if worker else ["--no-worker"])
        proc = self._spawn(name, args, env)
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: healthy(url), 30, f"{name} did not start: {self.log_text(name)}")
        return proc, url

    def worker(self, name: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        return self._spawn(name, ["worker"], env)

    def log_text(self, name: str, tail: int = 4000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def stop_all(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.started:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until(predicate: Callable[[], bool], seconds: float, message: str = "condition not reached") -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(0.05)
