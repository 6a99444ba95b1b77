"""Schemathesis against sfumato's own OpenAPI document, on a real server process.

Every operation, authenticated, with bounded examples: no 5xx, every response (errors
included) conforms to the documented schema and status codes, negative data is rejected.
``positive_data_acceptance`` is left out on purpose: whether a schema-valid request is
accepted also depends on server state (credits, which files exist), so a documented 402 or
422 for valid-looking input is correct behaviour, not a failure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import Processes

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    data = tmp_path_factory.mktemp("fuzz")
    env = {"SFUMATO_DATA_DIR": str(data), "SFUMATO_SANDBOX_LATENCY_MS": "5",
           "SFUMATO_RATE_LIMIT_CREATE": "1000000/minute"}
    env["SFUMATO_DATABASE_URL"] = ""
    cli = [sys.executable, "-m", "sfumato.cli"]
    created = subprocess.run([*cli, "accounts", "create", "fuzz", "--credits", "1000000", "--json"],
                             env=env, capture_output=True, text=True, check=True).stdout
    key = json.loads(created)["api_key"]
    processes = Processes(env, data)
    _, url = processes.api("server", worker=True)
    try:
        yield url, {"Authorization": f"Bearer {key}"}
    finally:
        processes.stop_all()
        server_log = processes.log_text("server", tail=10**9)
        assert "Traceback" not in server_log, server_log[-3000:]


def test_every_operation_conforms(live_server: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    url, auth = live_server
    report = tmp_path / "report.json"
    args = [
        str(Path(sys.executable).parent / "schemathesis"), "run", f"{url}/openapi.json",
        "--header", f"Authorization:{auth['Authorization']}",
        "--max-examples", "30", "--seed", "1", "--workers", "1", "--phases", "examples,coverage,fuzzing",
        "--exclude-checks", "positive_data_acceptance",
        "--report", "json", "--report-json-path", str(report),
    ]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-6000:]
    summary = json.loads(report.read_text())
    operations = summary["operations"]
    assert operations["tested"] == operations["selected"] == operations["total"] >= 9, operations
    assert summary["test_cases"]["unique_failures"] == 0 and summary["errors"] == []
