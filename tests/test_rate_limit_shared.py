"""Rate limits shared through Redis by several API processes, and what happens without Redis."""

from __future__ import annotations

import logging
import os
import socket

import pytest

from tests.conftest import new_customer, serve
from tests.helpers import create

REDIS_URL = os.environ.get("SFUMATO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _redis_reachable() -> bool:
    host, port = REDIS_URL.split("//", 1)[1].split("/", 1)[0].split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


async def test_two_api_processes_share_one_limit(make_deps) -> None:
    if not _redis_reachable():
        pytest.skip(f"Redis not reachable at {REDIS_URL}")
    first = await make_deps(run_worker=False, rate_limit_create="3/minute", redis_url=REDIS_URL)
    second = await make_deps(run_worker=False, rate_limit_create="3/minute", redis_url=REDIS_URL)
    who = await new_customer(first)
    async with serve(first) as a, serve(second) as b:
        statuses = [(await create(client, who, model="qwen-image")).status_code for client in (a, b, a)]
        assert statuses == [202, 202, 202]
        over = await create(b, who, model="qwen-image")
    assert over.status_code == 429 and over.json()["error"]["code"] == "rate_limited"
    assert int(over.headers["Retry-After"]) >= 1


async def test_without_redis_the_limit_fails_open(make_deps, caplog: pytest.LogCaptureFixture) -> None:
    deps = await make_deps(run_worker=False, rate_limit_create="1/minute", redis_url="redis://127.0.0.1:1/0")
    who = await new_customer(deps)
    with caplog.at_level(logging.WARNING, logger="sfumato.api"):
        async with serve(deps) as client:
            statuses = [(await create(client, who, model="qwen-image")).status_code for _ in range(3)]
    assert statuses == [202, 202, 202]
    assert "rate limit storage unavailable" in caplog.text
