"""The suite's own use of the machine's shared services, set by environment variables (README,
beside the test command): the PostgreSQL database name prefix, the Redis URL, the port range."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.conftest import PG_PREFIX, database_name, database_prefix
from tests.processes import free_port, listening_socket, port_range

ROOT = Path(__file__).resolve().parents[1]


def test_port_range_reads_first_last_both_included() -> None:
    assert port_range("20000-20999") == range(20000, 21000)
    assert port_range(" 7000-7000 ") == range(7000, 7001)
    assert port_range(None) is None
    assert port_range("") is None


@pytest.mark.parametrize("spec", ["20000", "a-b", "20999-20000", "0-10", "65000-65536", "-5", "1-2-3"])
def test_port_range_refuses_what_is_not_a_range_of_ports(spec: str) -> None:
    with pytest.raises(ValueError, match="SFUMATO_TEST_PORTS"):
        port_range(spec)


def _free_run(length: int) -> range:
    """``length`` consecutive ports that nothing listens on now."""
    for _ in range(200):
        with listening_socket(None) as probe:
            start = probe.getsockname()[1]
        ports = range(start, start + length)
        if ports.stop <= 65536 and all(_bindable(port) for port in ports):
            return ports
    raise AssertionError(f"no run of {length} free ports found")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def three_ports() -> range:
    return _free_run(3)


def test_ports_come_from_the_range_and_skip_a_taken_one(three_ports: range) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", three_ports[1]))
        taken.listen()
        first, second, *more = [free_port(three_ports) for _ in range(6)]
    assert {first, second} == {three_ports[0], three_ports[2]}, "a port just given is not given again at once"
    assert set(more) <= {three_ports[0], three_ports[2]}  # and once all were given, they come round again


def test_a_full_range_is_an_error_that_names_the_variable(three_ports: range) -> None:
    with ExitStack() as held:
        for _ in three_ports:
            held.enter_context(listening_socket(three_ports)).listen()
        with pytest.raises(RuntimeError, match=f"SFUMATO_TEST_PORTS \\({three_ports.start}-{three_ports[-1]}\\)"):
            listening_socket(three_ports)


def test_without_a_range_the_os_picks_the_port() -> None:
    with listening_socket(None) as sock:
        assert sock.getsockname()[0] == "127.0.0.1" and sock.getsockname()[1] > 0


def test_database_prefix_default_and_refusals() -> None:
    assert database_prefix(None) == database_prefix("") == "sfumato_test_"
    assert database_prefix("ci_runner_7_") == "ci_runner_7_"
    for bad in ["Sfumato_", 'x"; DROP DATABASE postgres; --', "7up_", "a-b", "x" * 56]:
        with pytest.raises(ValueError, match="SFUMATO_TEST_PG_PREFIX"):
            database_prefix(bad)
    assert re.fullmatch(r"ci_[0-9a-f]{8}", database_name("ci_"))
    assert len(database_name("x" * 55)) == 63  # PostgreSQL's longest name


def test_the_session_database_carries_the_prefix(pg_database: str) -> None:
    name = pg_database.rsplit("/", 1)[1]
    assert re.fullmatch(re.escape(PG_PREFIX) + r"[0-9a-f]{8}", name), name


PROBE = """
import asyncio, json
import httpx
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from tests import conftest, processes
from tests.test_rate_limit_shared import REDIS_URL
from tests.upstreams.server import FakeServer

class Hello(FakeServer):
    def app(self):
        return Starlette(routes=[Route("/", lambda request: PlainTextResponse("hello"))])

async def main():
    async with Hello() as fake, httpx.AsyncClient() as client:
        answer = (await client.get(fake.url)).text
        return fake.url, answer

url, answer = asyncio.run(main())
print(json.dumps({"prefix": conftest.PG_PREFIX, "database": conftest.database_name(), "redis": REDIS_URL,
                  "free_port": processes.free_port(), "fake": url, "answer": answer}))
"""


def test_the_variables_reach_databases_redis_and_every_server_port(three_ports: range) -> None:
    """In a fresh interpreter, as a test run would start: the names, the Redis URL and the ports
    (a process's port, and an upstream fake's) all follow the environment."""
    env = {"SFUMATO_TEST_PG_PREFIX": "ci_probe_", "SFUMATO_TEST_REDIS_URL": "redis://127.0.0.1:6390/7",
           "SFUMATO_TEST_PORTS": f"{three_ports.start}-{three_ports[-1]}"}
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env={**_base_env(), **env},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["prefix"] == "ci_probe_" and re.fullmatch(r"ci_probe_[0-9a-f]{8}", seen["database"])
    assert seen["redis"] == "redis://127.0.0.1:6390/7"
    assert seen["free_port"] in three_ports
    assert int(seen["fake"].rsplit(":", 1)[1]) in three_ports and seen["answer"] == "hello"


def test_a_bad_variable_stops_the_run_with_its_name() -> None:
    done = subprocess.run([sys.executable, "-c", "import tests.processes"], cwd=ROOT,
                          env={**_base_env(), "SFUMATO_TEST_PORTS": "lots"}, capture_output=True, text=True)
    assert done.returncode != 0 and "SFUMATO_TEST_PORTS='lots'" in done.stderr


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SFUMATO_TEST_")}
