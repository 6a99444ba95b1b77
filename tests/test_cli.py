"""The ``sfumato`` command: admin commands against the database, and the README's first command
(``serve --demo``) driven end to end by ``sfumato generate`` in real processes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from sfumato.cli import app
from tests.processes import Processes

runner = CliRunner()
SFUMATO = [sys.executable, "-m", "sfumato.cli"]


@pytest.fixture(params=["sqlite", "postgres"])
def cli_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    env = {"SFUMATO_DATA_DIR": str(tmp_path / "data")}
    if request.param == "postgres":
        env["SFUMATO_DATABASE_URL"] = request.getfixturevalue("pg_database")
    return env


def invoke(env: dict[str, str], *args: str) -> str:
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_accounts_create_json_then_grant_show_and_keys(cli_env: dict[str, str]) -> None:
    name = f"acme-{os.urandom(3).hex()}"
    created = json.loads(invoke(cli_env, "accounts", "create", name, "--credits", "50", "--json"))
    assert set(created) == {"account_id", "api_key"}
    assert created["account_id"].startswith("acct_") and created["api_key"].startswith("sk-")
    invoke(cli_env, "accounts", "grant", name, "25", "--note", "top-up")
    shown = json.loads(invoke(cli_env, "accounts", "show", created["account_id"], "--json"))
    assert shown["balance"] == shown["ledger_sum"] == 75
    assert [(e["kind"], e["amount"]) for e in shown["ledger"]] == [("grant", 25), ("grant", 50)]
    issued = json.loads(invoke(cli_env, "keys", "create", name, "--json"))
    listing = invoke(cli_env, "keys", "list", name, "--json")
    assert issued["api_key"] not in listing
    assert [k["revoked_at"] for k in json.loads(listing)] == [None, None]
    invoke(cli_env, "keys", "revoke", issued["key_id"])
    after = {k["key_id"]: k for k in json.loads(invoke(cli_env, "keys", "list", name, "--json"))}
    assert after[issued["key_id"]]["revoked_at"] is not None
    assert after[issued["key_id"]]["key"] == issued["api_key"][:12] + "…" + issued["api_key"][-4:]
    assert sum(k["revoked_at"] is None for k in after.values()) == 1


def test_admin_errors_exit_non_zero(cli_env: dict[str, str]) -> None:
    result = runner.invoke(app, ["accounts", "grant", "no-such-account", "5"], env=cli_env)
    assert result.exit_code == 1
    assert "No single account" in result.output


def test_models_lists_the_catalog(cli_env: dict[str, str]) -> None:
    ids = [m["id"] for m in json.loads(invoke(cli_env, "models", "--json"))]
    assert sorted(ids) == ["google-imagen4", "gpt-image-1-5", "grok-imagine", "qwen-image"]


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory):
    """The README's first command, once for the module: ``sfumato serve --demo``."""
    tmp_path = tmp_path_factory.mktemp("demo")
    env = {"SFUMATO_DATA_DIR": str(tmp_path / "data"), "SFUMATO_SANDBOX_LATENCY_MS": "50", "SFUMATO_DATABASE_URL": ""}
    processes = Processes(env, tmp_path)
    _, url = processes.api("serve", worker=True, extra=("--demo",))
    try:
        yield url, processes.env
    finally:
        processes.stop_all()


@pytest.mark.parametrize(
    ("model", "params", "size"),
    [("gpt-image-1-5", ["aspect_ratio=2:3"], (1024, 1536)),
     ("qwen-image", ["image_size=landscape_4_3", "output_format=jpeg"], (1024, 768)),
     ("google-imagen4", ["aspect_ratio=3:4", "seed=7"], (896, 1280)),
     ("grok-imagine", ["enable_pro=true"], (1024, 1024))],
)
def test_readme_serve_demo_then_generate(demo_server, tmp_path: Path, model: str, params: list[str],
                                         size: tuple[int, int]) -> None:
    url, env = demo_server
    key = subprocess.run([*SFUMATO, "demo-key"], env=env, capture_output=True, text=True, check=True).stdout.strip()
    out = tmp_path / f"{model}.img"
    args = [*SFUMATO, "generate", "-m", model, "a lighthouse at dusk", "-o", str(out)]
    for pair in params:
        args += ["--param", pair]
    done = subprocess.run(args, env={**env, "SFUMATO_API_KEY": key, "SFUMATO_URL": url},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "succeeded (sandbox)" in done.stdout
    assert Image.open(out).size == size


def test_generate_reports_validation_errors(demo_server) -> None:
    url, env = demo_server
    key = subprocess.run([*SFUMATO, "demo-key"], env=env, capture_output=True, text=True, check=True).stdout.strip()
    done = subprocess.run([*SFUMATO, "generate", "-m", "qwen-image", "x", "--param", "image_size=huge"],
                          env={**env, "SFUMATO_API_KEY": key, "SFUMATO_URL": url}, capture_output=True, text=True)
    assert done.returncode == 1
    assert "validation_failed" in done.stderr and "params.image_size" in done.stderr


def test_migrate_prints_its_database_on_one_unwrapped_line(tmp_path: Path) -> None:
    """A path longer than the terminal (80 columns when piped) stays whole: it is copied from there."""
    data = tmp_path / ("a-data-dir-whose-name-is-longer-than-any-terminal-line-" * 2)
    result = runner.invoke(app, ["migrate"], env={"SFUMATO_DATA_DIR": str(data), "SFUMATO_DATABASE_URL": ""})
    assert result.exit_code == 0, result.output
    assert result.stdout == f"database is up to date: sqlite+aiosqlite:///{data / 'sfumato.db'}\n"


README = Path(__file__).resolve().parents[1] / "README.md"


def readme_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def commands(block: str) -> list[str]:
    """A block's command text: comments dropped, continued lines joined."""
    text = re.sub(r"\\\n", " ", block)
    return [re.sub(r"\s+#\s.*$", "", line) for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_command_lines_have_no_placeholders_and_quiet_curls() -> None:
    lines = [line for block in readme_blocks() for line in commands(block)]
    assert lines, "README has shell blocks"
    for line in lines:
        assert not re.search(r"\.\.\.|…|<[a-z][^>]*>| / sfumato ", line), f"not pasteable as-is: {line}"
        for curl in re.findall(r"curl((?: -[A-Za-z]+)+)", line):
            assert "s" in curl.replace(" -", ""), f"curl without -s prints a progress meter: {line}"


def test_ci_runs_the_readme_test_command_word_for_word() -> None:
    test_command = next(line for block in readme_blocks() for line in commands(block) if "pytest" in line)
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    # .ci/run asks pip to be quiet (-q); every other word is the README's.
    assert test_command.replace("pip install -e", "pip install -q -e") in ci.splitlines()


def test_readme_blocks_run_as_pasted_from_another_folder(demo_server, tmp_path: Path) -> None:
    """The quickstart, the CLI and admin blocks pasted into bash against the server at SFUMATO_URL
    (not port 8000), in a folder that is not the repository; the install commands and the
    long-running ``serve``/``worker`` are the only lines left out."""
    binaries = Path(sys.executable).parent
    if not (binaries / "sfumato").exists() or not shutil.which("curl") or not shutil.which("python3"):
        pytest.skip("needs the installed sfumato script, curl and python3 on PATH")
    url, env = demo_server
    script = "\n".join(block for block in readme_blocks() if "pip install" not in block)
    script = "\n".join(line for line in script.splitlines() if not re.match(r"sfumato (serve|worker)\b", line))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run(["bash", "-eo", "pipefail", "-c", script], cwd=elsewhere, capture_output=True, text=True,
                          timeout=180, env={**env, "SFUMATO_URL": url, "PATH": f"{binaries}:{os.environ['PATH']}"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert Image.open(elsewhere / "lighthouse.png").size == (1408, 768)
    assert Image.open(elsewhere / "product.png").size == (1024, 576)
    assert '"status":"succeeded"' in done.stdout and "revoked sk-sf_" in done.stdout


def test_the_client_reads_sfumato_url_like_the_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    from sfumato.client.config import connection

    monkeypatch.delenv("SFUMATO_BASE_URL", raising=False)
    monkeypatch.setenv("SFUMATO_URL", "http://gpu-box:9000/")
    assert connection(None, "sk-x")[0] == "http://gpu-box:9000"
    monkeypatch.setenv("SFUMATO_BASE_URL", "http://first:1")
    assert connection(None, "sk-x")[0] == "http://first:1"
    assert connection("http://given:2", "sk-x")[0] == "http://given:2"
