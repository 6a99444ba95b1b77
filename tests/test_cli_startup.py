"""The CLI starts without the server stack: ``import sfumato.cli``, ``version``, ``--help``,
``demo-key`` and the client-side ``generate`` load none of FastAPI, SQLAlchemy, Pillow, the
providers or the worker (issue 14: 2 s to start; bench/cli_startup.py times it). Not timed: what
is checked is which modules a fresh interpreter has loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sfumato import __version__
from tests.processes import free_port

ROOT = Path(__file__).resolve().parents[1]

HEAVY = ("sqlalchemy", "fastapi", "starlette", "uvicorn", "PIL", "aiohttp", "alembic", "asyncpg", "aiosqlite",
         "redis", "av", "jinja2", "aioboto3", "botocore", "prometheus_client", "limits", "yaml",
         "sfumato.app", "sfumato.api", "sfumato.db", "sfumato.worker", "sfumato.providers", "sfumato.tasks",
         "sfumato.accounts", "sfumato.billing", "sfumato.files", "sfumato.storage", "sfumato.catalog",
         "sfumato.deps", "sfumato.webhooks")
"""Packages only the server needs (a name covers its submodules)."""
CLIENT = ("httpx", "httpx_sse", "sfumato.client", "sfumato.generate")
"""What the client side costs (httpx is about 0.1 s): only ``generate`` may load it."""
SETTINGS = ("pydantic_settings", "sfumato.settings")

RUN = """
import json, sys
from sfumato.cli import app
code = 0
try:
    app(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"exit": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def loaded(modules: list[str], names: tuple[str, ...]) -> list[str]:
    return [m for m in modules if any(m == n or m.startswith(f"{n}.") for n in names)]


def probe(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, list[str]]:
    """Run ``sfumato ARGS`` in a fresh interpreter: its exit code, its output, the modules it loaded."""
    done = subprocess.run([sys.executable, "-c", RUN, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    *messages, report = done.stderr.strip().splitlines()
    seen = json.loads(report)
    return seen["exit"] or 0, done.stdout + "\n".join(messages), seen["modules"]


def modules_after(statement: str) -> list[str]:
    """The modules a fresh interpreter holds after running ``statement``."""
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=True)
    modules: list[str] = json.loads(done.stdout)
    return modules


def test_importing_the_cli_loads_no_server_module() -> None:
    assert loaded(modules_after("import sfumato.cli"), HEAVY + CLIENT + SETTINGS) == []


def test_importing_sfumato_loads_nothing_and_its_client_no_server_module() -> None:
    assert loaded(modules_after("import sfumato"), HEAVY + CLIENT + SETTINGS + ("pydantic", "rich", "typer")) == []
    assert loaded(modules_after("import sfumato.client"), HEAVY + SETTINGS) == []


def test_version_prints_the_version_and_loads_nothing_heavy() -> None:
    code, out, modules = probe("version")
    assert (code, out.strip()) == (0, __version__)
    assert loaded(modules, HEAVY + CLIENT + SETTINGS) == []


def test_help_lists_every_command_and_loads_nothing_heavy() -> None:
    code, out, modules = probe("--help")
    assert code == 0
    for command in ("serve", "worker", "migrate", "demo-key", "models", "providers", "generate", "accounts", "keys"):
        assert command in out
    assert loaded(modules, HEAVY + CLIENT) == []


def test_demo_key_reads_the_key_file_and_loads_only_the_settings(tmp_path: Path) -> None:
    (tmp_path / "demo_api_key").write_text("sk-sf_demo\n")
    code, out, modules = probe("demo-key", env=_env(SFUMATO_DATA_DIR=str(tmp_path)))
    assert (code, out.strip()) == (0, "sk-sf_demo")
    assert loaded(modules, HEAVY + CLIENT) == []


def test_generate_loads_the_client_only(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there: the command fails after starting
    code, out, modules = probe("generate", "-m", "qwen-image", "x", "--url", url, "--api-key", "sk-x",
                               env=_env(SFUMATO_DATA_DIR=str(tmp_path)))
    assert code == 1 and f"cannot reach {url}" in out
    assert "sfumato.generate" in modules and "httpx" in modules
    assert loaded(modules, HEAVY + SETTINGS) == []
    assert "sfumato.client.async_client" not in modules and "asyncio" not in modules  # blocking client only


@pytest.mark.parametrize("args", [["version"], ["--help"]])
def test_the_installed_command_still_runs(args: list[str]) -> None:
    """The ``sfumato`` script pip installs from ``[project.scripts]`` (``sfumato.cli:app``)."""
    script = Path(sys.executable).with_name("sfumato")
    if not script.exists():
        pytest.skip(f"no {script}: the package is not installed in this interpreter's environment")
    done = subprocess.run([str(script), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (done.stdout.strip() == __version__) if args == ["version"] else ("generate" in done.stdout)


def test_the_clients_extension_table_is_the_servers() -> None:
    """``generate`` names files with the client's copy (the server's module loads the database)."""
    from sfumato.client.types import EXTENSIONS
    from sfumato.files.outputs import EXTENSIONS as SERVER_EXTENSIONS

    assert EXTENSIONS == SERVER_EXTENSIONS


def _env(**values: str) -> dict[str, str]:
    return {**os.environ, **values}
