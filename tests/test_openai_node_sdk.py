"""The official ``openai`` Node SDK streaming from the OpenAI-compatible door (generate and edit,
``stream: true`` with ``partial_images``): it must yield the partial images and one completed
event each, as it does from OpenAI. The SDK is installed from the npm registry into a cache
directory once; without node, npm or the registry the test is skipped and says which."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sfumato.deps import Deps
from tests.conftest import new_customer
from tests.money import audit
from tests.test_client import live

SCRIPT = Path(__file__).parent / "node" / "openai_stream.mjs"
SDK = "openai@7"


@pytest.fixture(scope="session")
def node_sdk() -> Path:
    """A directory whose node_modules holds the openai SDK (``SFUMATO_TEST_NODE_DIR``, else a
    cache under the home directory), installed on first use."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed: the Node SDK test needs them")
    where = Path(os.environ.get("SFUMATO_TEST_NODE_DIR", Path.home() / ".cache" / "sfumato-tests" / "node-openai"))
    if not (where / "node_modules" / "openai" / "package.json").exists():
        where.mkdir(parents=True, exist_ok=True)
        try:
            done = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent", "--prefix", str(where),
                                   SDK], capture_output=True, text=True, timeout=180)
        except subprocess.TimeoutExpired:
            pytest.skip(f"npm could not install {SDK} within 180 s (is the npm registry reachable?)")
        if done.returncode != 0:
            pytest.skip(f"npm could not install {SDK} (is the npm registry reachable?): {done.stderr[-300:]}")
    return where


async def test_the_node_sdk_yields_partial_and_completed_events(make_deps: Callable[..., Any],
                                                                node_sdk: Path) -> None:
    deps: Deps = await make_deps(sandbox_latency_ms="60")
    who = await new_customer(deps, credits=100)
    script = node_sdk / SCRIPT.name
    shutil.copyfile(SCRIPT, script)  # beside its node_modules, so that `import "openai"` resolves
    async with live(deps) as url:
        process = await asyncio.create_subprocess_exec("node", str(script), f"{url}/v1", who.api_key,
                                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()[-2000:]
    events = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    assert [(e["call"], e["type"], e["index"]) for e in events] == [
        ("generate", "image_generation.partial_image", 0), ("generate", "image_generation.partial_image", 1),
        ("generate", "image_generation.completed", None),
        ("edit", "image_edit.partial_image", 0), ("edit", "image_edit.completed", None)]
    assert all(e["bytes"] > 1000 and e["format"] == "png" for e in events)
    assert [e["size"] for e in events if e["call"] == "generate"] == ["1536x1024"] * 3
    assert [e["usage"] for e in events if e["type"].endswith("completed")] == [True, True]
    books = await audit(deps, who.account_id)
    assert books.balance == 100 - 2 * 4 and books.statuses["succeeded"] == 2
