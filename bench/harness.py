"""What the benchmark scripts share: a free port, a process's RSS and CPU time, and a scratch
database (a temporary data dir, plus a fresh PostgreSQL database when asked) removed afterwards."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

PG_ADMIN = os.environ.get("SFUMATO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident memory of ``pid`` in MiB (``field="VmHWM"``: its peak so far)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return 0.0


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    tree, queue = [], [pid]
    while queue:
        current = queue.pop()
        tree.append(current)
        queue.extend(children.get(current, []))
    return tree


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its descendants so far (0 for a process gone)."""
    ticks = 0
    for member in process_tree(pid):
        try:
            with open(f"/proc/{member}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


@asynccontextmanager
async def scratch(backend: str, prefix: str) -> AsyncIterator[tuple[str, str | None]]:
    """``(data dir, database URL or None for SQLite in the data dir)``, both gone afterwards."""
    data_dir = tempfile.mkdtemp(prefix=f"sfumato-{prefix}-")
    name, admin, database_url = f"sfumato_{prefix}_{os.getpid()}", None, None
    try:
        if backend == "postgres":
            admin = await asyncpg.connect(PG_ADMIN)
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
            await admin.execute(f'CREATE DATABASE "{name}"')
            database_url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
        yield data_dir, database_url
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
        if admin is not None:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
