"""Schemathesis against sfumato's own OpenAPI document, on a real server process.

Every operation, authenticated, every check (``--checks all``, ``positive_data_acceptance``
included), 100 examples per operation: no 5xx, every response conforms to the documented
schema and status codes, a request the document forbids is refused and one it allows is
accepted.

The document says what the server accepts, so what Schemathesis cannot guess is taught here,
not excused. This module is also the Schemathesis hooks module (``SCHEMATHESIS_HOOKS``) that
tells it how to make the values the document names by a format of its own:

- ``sfumato-cursor``: a cursor in the server's encoding (base64url of ``[timestamp, id]``),
  pointing anywhere, including where no row is: a well-formed cursor must be accepted.
- ``sfumato-file-id`` / ``sfumato-file-url``: the id / URL of a file the fuzz account owns; each
  value is a fresh upload, so that no other operation (a fuzzed ``DELETE``) has removed it.
- ``sfumato-image-data-url``: a ``data:`` URL of a real image.
- multipart parts typed ``image/png``, ``image/jpeg``, ``image/webp`` (the upload's ``file``,
  the OpenAI edit's ``image``): real images, since the server decides the type from the bytes.

One answer depends on state the document cannot name, and is the one failure dropped
(:func:`filter_failure`): a task reference must carry the ``kind`` and ``mimeType`` of the
file its URL names, which only the server knows; a 422 naming nothing but that is correct.

``--generation-allow-x00 false``: no text anywhere in a request may hold U+0000 (PostgreSQL
cannot store it; the server answers 422 on every backend). That rule holds for every string of
every body, query and form, including values the document leaves free (``{}``), where a JSON
Schema cannot say it; it is documented in the error table instead.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.processes import Processes

pytestmark = pytest.mark.slow
HOOKS = "tests.test_openapi_fuzz"
ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = 100


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    data = tmp_path_factory.mktemp("fuzz")
    env = {"SFUMATO_DATA_DIR": str(data), "SFUMATO_SANDBOX_LATENCY_MS": "5",
           "SFUMATO_RATE_LIMIT_CREATE": "1000000/minute"}
    env["SFUMATO_DATABASE_URL"] = ""
    cli = [sys.executable, "-m", "sfumato.cli"]
    created = subprocess.run([*cli, "accounts", "create", "fuzz", "--credits", "100000000", "--json"],
                             env={**os.environ, **env}, capture_output=True, text=True, check=True).stdout
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
        "--checks", "all", "--max-examples", str(EXAMPLES), "--seed", "1", "--workers", "1",
        "--phases", "examples,coverage,fuzzing", "--generation-allow-x00", "false",
        "--report", "json", "--report-json-path", str(report),
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": HOOKS, "PYTHONPATH": str(ROOT),
           "SFUMATO_FUZZ_URL": url, "SFUMATO_FUZZ_AUTH": auth["Authorization"]}
    began = time.monotonic()
    done = subprocess.run(args, capture_output=True, text=True, timeout=900, cwd=tmp_path, env=env)
    print(f"schemathesis took {time.monotonic() - began:.0f} s")
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]
    summary = json.loads(report.read_text())
    operations = summary["operations"]
    assert operations["tested"] == operations["selected"] == operations["total"] >= 9, operations
    assert summary["test_cases"]["unique_failures"] == 0 and summary["errors"] == []


# --- The Schemathesis hooks (loaded in the Schemathesis process only) ---------------------------

def _image(fmt: str, width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, format=fmt)
    return out.getvalue()


def _upload(data: bytes) -> dict[str, Any]:
    response = httpx.post(f"{os.environ['SFUMATO_FUZZ_URL']}/api/v1/files", files={"file": ("ref", data)},
                          headers={"Authorization": os.environ["SFUMATO_FUZZ_AUTH"]}, timeout=30)
    response.raise_for_status()
    uploaded: dict[str, Any] = response.json()
    return uploaded


def _cursor(at: datetime, row_id: str) -> str:
    raw = json.dumps([at.isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


REFERENCE_STATE = re.compile(r"params\.referenceMediaItems\[\d+\]\.(kind|mimeType)")


def _register() -> None:
    import schemathesis
    from hypothesis import strategies as st
    from schemathesis.openapi.checks import RejectedPositiveData

    sizes = st.integers(1, 48)
    colours = st.tuples(*[st.integers(0, 255)] * 3)
    images = {mime: st.builds(_image, st.just(fmt), sizes, sizes, colours)
              for mime, fmt in (("image/png", "PNG"), ("image/jpeg", "JPEG"), ("image/webp", "WEBP"))}
    for mime, strategy in images.items():
        schemathesis.openapi.media_type(mime, strategy)
    any_image = st.one_of(*images.values())
    ids = st.from_regex(r"(task|file)_[0-9a-f]{32}", fullmatch=True) | st.text(max_size=40)
    moments = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 1, 1), timezones=st.just(UTC))
    schemathesis.openapi.format("sfumato-cursor", st.builds(_cursor, moments, ids))
    pool = [_upload(_image(fmt, 8 + i, 8, (i * 20, 99, 9))) for i in range(8) for fmt in ("PNG", "JPEG", "WEBP")]
    schemathesis.openapi.format("sfumato-file-id", st.sampled_from([f["id"] for f in pool]))
    schemathesis.openapi.format("sfumato-file-url", st.sampled_from([f["url"] for f in pool]))
    schemathesis.openapi.format("sfumato-image-data-url", st.tuples(st.sampled_from(sorted(images)), any_image).map(
        lambda pair: f"data:{pair[0]};base64,{base64.b64encode(pair[1]).decode()}"))

    kept = {f["id"] for f in pool}

    @schemathesis.hook
    def filter_case(context: Any, case: Any) -> bool:
        """The fuzz's own reference files stay: a fuzzed DELETE may not remove them."""
        return not (case.method == "DELETE" and case.path_parameters.get("file_id") in kept)

    @schemathesis.hook
    def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
        """Keep every failure but a 422 that names only a reference's kind or mimeType (the file's own,
        which only the server knows)."""
        if not isinstance(failure, RejectedPositiveData) or response.status_code != 422:
            return True
        if context.operation.label != "POST /api/v1/tasks":
            return True
        details = response.json().get("error", {}).get("details") or [{}]
        return not all(REFERENCE_STATE.fullmatch(str(d.get("field"))) for d in details)


if os.environ.get("SCHEMATHESIS_HOOKS") == HOOKS:
    _register()
