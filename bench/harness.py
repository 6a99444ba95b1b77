"""What the benchmark scripts share: a free port, a process's RSS, and a scratch database
(a temporary data dir, plus a fresh PostgreSQL database when asked) removed afterwards."""

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


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


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
