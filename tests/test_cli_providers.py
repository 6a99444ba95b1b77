"""``sfumato providers``: the configured routes, which are live, and their health read back
from a running process's /metrics."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from typer.testing import CliRunner

from sfumato.cli import app
from sfumato.providers.health import parse

METRICS = """# TYPE sfumato_upstream_circuit_state gauge
sfumato_upstream_circuit_state{model="gpt-image-1-5",route="openai:gpt-image-1.5"} 2.0
# TYPE sfumato_upstream_attempts_total counter
sfumato_upstream_attempts_total{model="gpt-image-1-5",outcome="ok",route="openai:gpt-image-1.5"} 7.0
sfumato_upstream_attempts_total{model="gpt-image-1-5",outcome="upstream_error",route="openai:gpt-image-1.5"} 5.0
"""


@pytest.fixture
def metrics_server() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = METRICS.encode()
            self.send_response(200 if self.path == "/metrics" else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    for name in ("OPENAI_API_KEY", "XAI_API_KEY", "FAL_KEY", "DASHSCOPE_API_KEY", "GOOGLE_VERTEX_API_KEY",
                 "GOOGLE_VERTEX_ACCESS_TOKEN", "GOOGLE_CLOUD_PROJECT", "SFUMATO_RELAY_API_KEY",
                 "SFUMATO_RELAY_BASE_URL", "SFUMATO_ROUTES_FILE", "SFUMATO_SANDBOX_ONLY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SFUMATO_DATA_DIR", str(tmp_path_factory.mktemp("data")))


def test_routes_say_what_is_missing_and_health_comes_from_metrics(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory, metrics_server: str
) -> None:
    _clean_env(monkeypatch, tmp_path_factory)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("GOOGLE_VERTEX_ACCESS_TOKEN", "ya29.test")  # but no GOOGLE_CLOUD_PROJECT
    result = CliRunner().invoke(app, ["providers", "--json", "--server", metrics_server])
    assert result.exit_code == 0, result.output
    rows = {(r["model"], r["route"]): r for r in json.loads(result.output)}
    openai = rows[("gpt-image-1-5", "openai:gpt-image-1.5")]
    assert (openai["live"], openai["missing"], openai["breaker"]) == (True, None, "open")
    assert openai["attempts"] == {"ok": 7, "upstream_error": 5}
    assert rows[("grok-imagine", "xai:grok-imagine-image")]["missing"] == "XAI_API_KEY"
    assert rows[("google-imagen4", "vertex-oauth")]["missing"] == "GOOGLE_CLOUD_PROJECT"
    assert "sk-test" not in result.output and "ya29" not in result.output


def test_an_unreachable_server_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    _clean_env(monkeypatch, tmp_path_factory)
    result = CliRunner().invoke(app, ["providers", "--server", "http://127.0.0.1:9"])
    assert result.exit_code == 1 and "Cannot read" in result.output


def test_health_summary_reads_circuit_and_attempts() -> None:
    [(key, health)] = parse(METRICS).items()
    assert key == ("gpt-image-1-5", "openai:gpt-image-1.5")
    assert health.summary == "open, 7 ok / 5 failed"
