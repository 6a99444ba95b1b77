"""Schemathesis against sfumato's own OpenAPI document, on a real server process.

Every operation, authenticated, every check (``--checks all``, ``positive_data_acceptance``
included), 100 examples per operation (about 2 minutes on one core): no 5xx, every response
conforms to the documented schema and status codes, a request the document forbids is refused
and one it allows is accepted.

The document says what the server accepts, so what Schemathesis cannot guess is taught here.
This module is also the Schemathesis hooks module (``SCHEMATHESIS_HOOKS``); it makes the values
the document names by a format of its own (each format's rule is in its description there):

- ``sfumato-cursor``: a cursor in the server's encoding (base64url of ``[timestamp, id]``),
  pointing anywhere, also where no row is: a well-formed cursor must be accepted.
- ``sfumato-ledger-cursor``: the ledger's cursor (base64url of ``[entry id]``), any integer.
- ``sfumato-prompt``: text with a visible character (Unicode L, M, N, P or S).
- ``sfumato-file-id`` / ``sfumato-file-url``: the id / URL of one of the fuzz account's files,
  uploaded once here; :func:`filter_case` keeps a fuzzed ``DELETE`` off them.
- ``sfumato-image-data-url``: a ``data:`` URL of a real image.
- ``sfumato-duration``: a ``Cancel-After`` duration within the default bounds (5 s to 24 h),
  spelt the ways the grammar allows (``90``, ``90s``, ``1.5m``, ``1h30m``, ``6000ms``).
- multipart parts typed ``image/png``, ``image/jpeg``, ``image/webp`` (the upload's ``file``,
  the OpenAI edit's ``image``): real images, since the server decides the type from the bytes.

:func:`filter_failure` drops exactly seven kinds of failure, each for a reason a JSON Schema
cannot carry; every other failure fails the test:

1. ``POST /api/v1/tasks`` (and ``/quote``, the same body), 422 naming only
   ``referenceMediaItems[i].kind``/``.mimeType``: they must be those of the file the URL names,
   which only the server's state knows.
2. The image-edit and OpenAI doors, a schema-valid body refused because an integer field holds
   a float with no fraction (``2.0``): JSON Schema counts 2.0 as an integer, these doors want a
   JSON integer. (Open: the doors could accept it.)
3. A "negative" multipart body that the server accepted and that, read as the parts it is sent
   as, the document allows: Schemathesis made it negative by a JSON type (``"5"`` became ``5``,
   ``[]``), which a part, being text, does not have (:func:`_valid_on_the_wire`).
4. The coverage case Schemathesis builds for multipart bodies with part encodings, which puts
   ``""`` into required text parts and calls it positive: it is not schema-valid.
5. ``POST /api/v1/tasks`` (and ``/quote``), 422 naming only ``Cancel-After`` as outside its
   bounds: the document gives the header's grammar as a pattern and its bounds in words (they are
   settings, which a pattern cannot carry); values Schemathesis draws from the pattern alone
   (``0``, ``9h``) land outside them.
6. ``GET /api/v1/account/usage`` (and ``/admin/v1/usage``), 422 naming only ``from``/``to`` for their range (``from``
   after ``to``, or more than 366 days): two dates each valid alone, a relation JSON Schema
   cannot state.
7. A "negative" case accepted whose one mutation "violates" the ``format`` of a ``prompt`` with
   a value that meets it (``"Åö"``): Schemathesis cannot check a format of ours, so its
   violation of one can be a valid prompt (:func:`_format_still_met`).

``--generation-allow-x00 false``: no text anywhere in a request may hold U+0000 (PostgreSQL
cannot store it; the server answers 422 on every backend, see ``api/bodies.py``). The rule holds
for every string of every body, query and form, also values the document leaves free (``{}``),
where a JSON Schema cannot say it.
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
import unicodedata
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
ADMIN_KEY = "sk-admin_fuzz"
"""``/admin/v1`` is fuzzed with the operator's key (a per-operation header in the run's config)."""


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    data = tmp_path_factory.mktemp("fuzz")
    env = {"SFUMATO_DATA_DIR": str(data), "SFUMATO_SANDBOX_LATENCY_MS": "5",
           "SFUMATO_RATE_LIMIT_CREATE": "1000000/minute", "SFUMATO_ADMIN_KEY": ADMIN_KEY}
    env["SFUMATO_DATABASE_URL"] = ""
    cli = [sys.executable, "-m", "sfumato.cli"]
    created = subprocess.run([*cli, "accounts", "create", "fuzz", "--credits", "1000000", "--json"],
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
    config = tmp_path / "schemathesis.toml"
    config.write_text(f'[[operations]]\ninclude-path-regex = "^/admin/"\n'
                      f'headers = {{ Authorization = "Bearer {ADMIN_KEY}" }}\n')
    args = [
        str(Path(sys.executable).parent / "schemathesis"), "--config-file", str(config), "run", f"{url}/openapi.json",
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


def _fuzz_account() -> tuple[str, set[str], str, str]:
    """The fuzz account's id and its keys' ids, and a decoy account and key made for the admin
    writes that would otherwise hit them (:func:`_register`'s ``before_call``)."""
    base, auth = os.environ["SFUMATO_FUZZ_URL"], {"Authorization": os.environ["SFUMATO_FUZZ_AUTH"]}
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    account = httpx.get(f"{base}/api/v1/account", headers=auth, timeout=30).json()["id"]
    keys = httpx.get(f"{base}/admin/v1/accounts/{account}/keys", headers=admin, timeout=30).json()["data"]
    decoy = httpx.post(f"{base}/admin/v1/accounts", json={"name": f"decoy-{os.getpid()}-{time.time_ns()}"},
                       headers=admin, timeout=30).json()["id"]
    decoy_key = httpx.post(f"{base}/admin/v1/accounts/{decoy}/keys", json={}, headers=admin, timeout=30).json()["id"]
    return account, {k["id"] for k in keys}, decoy, decoy_key


def _keep_the_fuzz_account(schemathesis: Any) -> None:
    """The fuzz account and its key stay usable: Schemathesis reuses ids it read in answers
    (``GET /admin/v1/accounts``), so a fuzzed admin write could disable, debit or revoke them and
    every later customer request would be refused. Such writes go to a decoy instead (an id of
    the same shape: the case stays what it was generated as)."""
    account, own_keys, decoy, decoy_key = _fuzz_account()

    @schemathesis.hook
    def before_call(context: Any, case: Any, **kwargs: Any) -> None:
        params = case.path_parameters
        if not params or case.method not in ("PATCH", "POST", "DELETE"):
            return
        if params.get("account_id") == account:
            params["account_id"] = decoy
        if params.get("key_id") in own_keys:
            params["key_id"] = decoy_key


def _cursor(at: datetime, row_id: str) -> str:
    raw = json.dumps([at.isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


REFERENCE_STATE = re.compile(r"params\.referenceMediaItems\[\d+\]\.(kind|mimeType)")
PLACEHOLDER_CASE = "Multipart body with custom encoding"
CREATE_BODY_DOORS = ("POST /api/v1/tasks", "POST /api/v1/tasks/quote")
USAGE_RANGE_DOORS = ("GET /api/v1/account/usage", "GET /admin/v1/usage")
RANGE_RULE = re.compile(r"is after to|at most \d+ may be asked")
INTEGER_DOORS = ("POST /api/v1/image/generation", "POST /v1/images/generations", "POST /v1/images/edits")


def _valid_on_the_wire(case: Any) -> bool:
    """Whether a multipart body, read as the parts it is sent as, is one the document allows.

    Schemathesis judges a negative case by its JSON values, but a part is text (``5`` is sent as
    the part ``"5"``) and a list is sent as one part per item (``[]`` as none). Here each part is
    one property, a repeated name numbered (``name#2``), so ``maxProperties`` counts parts."""
    import jsonschema_rs
    from schemathesis.core.transforms import to_wire_text
    from schemathesis.transport.serialization import Binary

    def text(value: Any) -> str:
        if isinstance(value, (bytes, Binary)):
            return "x" if (value.data if isinstance(value, Binary) else value) else ""
        return value if isinstance(value, str) else to_wire_text(value)

    body = case.operation.get_body_for_media_type(case.media_type)
    if body is None or not isinstance(case.body, dict):
        return False
    wire: dict[str, str] = {}
    for name, value in case.body.items():
        for index, item in enumerate(value if isinstance(value, list) else [value]):
            wire[name if index == 0 else f"{name}#{index + 1}"] = text(item)
    return bool(jsonschema_rs.validator_for(body.resolved_schema).is_valid(wire))


def _format_still_met(case: Any) -> bool:
    """Failure 7: the one mutation is the ``format`` of a prompt, and the prompt is still an
    ``sfumato-prompt`` (it has a visible character)."""
    mutations = getattr(case.meta.phase.data, "mutations", None) or ()
    if len(mutations) != 1 or tuple(mutations[0].keywords) != ("format",) or \
            not str(mutations[0].schema_pointer).endswith("/properties/prompt"):
        return False
    prompt = case.body.get("prompt") if isinstance(case.body, dict) else None
    return isinstance(prompt, str) and any(unicodedata.category(ch)[0] in "LMNPS" for ch in prompt)


def _beyond_the_document(label: str, response: Any) -> bool:
    """Whether a 422 is failure 1, 5 or 6 (see the module docstring): the server's state, a
    setting or a relation between fields decided it, which a JSON Schema cannot carry."""
    details = response.json().get("error", {}).get("details") or [{}]
    if label in USAGE_RANGE_DOORS:
        return all(d.get("field") in ("from", "to") and RANGE_RULE.search(str(d.get("message"))) for d in details)
    if label in CREATE_BODY_DOORS:
        if all(d.get("field") == "Cancel-After" and "must be between" in str(d.get("message")) for d in details):
            return True
        return all(REFERENCE_STATE.fullmatch(str(d.get("field"))) for d in details)
    return False


def _register() -> None:
    import schemathesis
    from hypothesis import strategies as st
    from schemathesis.core.failures import AcceptedNegativeData
    from schemathesis.openapi.checks import RejectedPositiveData

    sizes = st.integers(1, 48)
    colours = st.tuples(*[st.integers(0, 255)] * 3)
    images = {mime: st.builds(_image, st.just(fmt), sizes, sizes, colours)
              for mime, fmt in (("image/png", "PNG"), ("image/jpeg", "JPEG"), ("image/webp", "WEBP"))}
    for mime, strategy in images.items():
        schemathesis.openapi.media_type(mime, strategy)
    any_image = st.one_of(*images.values())
    text = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=30)
    ids = st.from_regex(r"(task|file)_[0-9a-f]{32}", fullmatch=True) | text
    moments = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 1, 1), timezones=st.just(UTC))
    schemathesis.openapi.format("sfumato-cursor", st.builds(_cursor, moments, ids))
    schemathesis.openapi.format("sfumato-ledger-cursor", st.integers().map(
        lambda n: base64.urlsafe_b64encode(json.dumps([n]).encode()).decode().rstrip("=")))
    visible = st.characters(categories=("L", "M", "N", "P", "S"))
    schemathesis.openapi.format("sfumato-prompt", st.tuples(text, visible, text).map("".join))
    pool = [_upload(_image(fmt, 8 + i, 8, (i * 20, 99, 9))) for i in range(8) for fmt in ("PNG", "JPEG", "WEBP")]
    schemathesis.openapi.format("sfumato-file-id", st.sampled_from([f["id"] for f in pool]))
    schemathesis.openapi.format("sfumato-file-url", st.sampled_from([f["url"] for f in pool]))
    schemathesis.openapi.format("sfumato-image-data-url", st.tuples(st.sampled_from(sorted(images)), any_image).map(
        lambda pair: f"data:{pair[0]};base64,{base64.b64encode(pair[1]).decode()}"))

    seconds = st.integers(5, 86400)
    schemathesis.openapi.format("sfumato-duration", st.one_of(
        seconds.map(str), seconds.map(lambda n: f"{n}s"), seconds.map(lambda n: f"{n * 1000}ms"),
        st.integers(1, 1440).map(lambda n: f"{n}m"), st.integers(1, 24).map(lambda n: f"{n}h"),
        st.tuples(st.integers(0, 23), st.integers(1, 59)).map(lambda hm: f"{hm[0]}h{hm[1]}m")))

    kept = {f["id"] for f in pool}
    _keep_the_fuzz_account(schemathesis)

    @schemathesis.hook
    def filter_case(context: Any, case: Any) -> bool:
        """The fuzz's own reference files stay: a fuzzed DELETE may not remove them."""
        return not (case.method == "DELETE" and case.path_parameters.get("file_id") in kept)

    @schemathesis.hook
    def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
        """Keep every failure but the six the document cannot express (see the module docstring)."""
        label = context.operation.label
        if isinstance(failure, AcceptedNegativeData):
            return not ((case.media_type == "multipart/form-data" and _valid_on_the_wire(case))
                        or _format_still_met(case))
        if not isinstance(failure, RejectedPositiveData) or response.status_code not in (400, 422):
            return True
        if case.meta.phase.data.description == PLACEHOLDER_CASE and "" in case.body.values():
            return False  # not a schema-valid body: Schemathesis put "" in the required text parts
        if label in INTEGER_DOORS and isinstance(case.body, dict):
            return not any(isinstance(v, float) and v.is_integer() for v in case.body.values())
        return not _beyond_the_document(label, response)

if os.environ.get("SCHEMATHESIS_HOOKS") == HOOKS:
    _register()
