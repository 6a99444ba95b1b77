"""Starting real sfumato processes (API servers, workers) for multi-process tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

CLI = [sys.executable, "-m", "sfumato.cli"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
