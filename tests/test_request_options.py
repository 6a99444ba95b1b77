"""Request options (issue 16, part 0): ``output_format`` with ``output_compression``,
``background``, ``input_fidelity``, ``moderation`` and ``user`` go from both image doors (the
image-edit API and ``/v1/images/*``) with the task to the provider: what the OpenAI fake
received and what came back (format by its magic bytes, alpha, compression); the sandbox makes
what was asked; a model that does not declare an option refuses it by name before anything is
reserved; and the seed task API takes none of them."""

from __future__ import annotations

import base64
import dataclasses
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest
from PIL import Image

from sfumato.catalog import load_catalog
from sfumato.catalog.loader import CatalogError
from sfumato.catalog.options import RequestOptions, read_options
from sfumato.providers.sandbox import render
from tests.conftest import new_customer, serve
from tests.helpers import create
from tests.money import audit
from tests.test_catalog_spec import NEW_MODEL, write_model
from tests.test_client import live
from tests.upstreams.harness import make_job, reference, route, routed
from tests.upstreams.openai import FakeOpenAI
from tests.upstreams.relay import FakeRelay

EDIT = "/api/v1/image/generation"
PNG, JPEG = b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"
CATALOG = load_catalog()


def is_webp(data: bytes) -> bool:
    return data[:4] == b"RIFF" and data[8:12] == b"WEBP"


def alpha_of(data: bytes) -> tuple[int, int] | None:
    """(lowest, highest) alpha, or None without an alpha channel."""
    with Image.open(io.BytesIO(data)) as image:
        return image.getchannel("A").getextrema() if "A" in image.getbands() else None  # type: ignore[return-value]


def png_data_url() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), "green").save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


# --- the image-edit API (spec §8) ------------------------------------------------------------------

async def test_the_image_edit_api_sends_every_field_and_answers_in_the_asked_format(
        upstream: tuple[FakeOpenAI, Any]) -> None:
    fake, deps = upstream
    body = {"images": [{"image_url": png_data_url()}], "prompt": "cut it out", "model": "gpt-image-1.5",
            "output_format": "webp", "output_compression": 30, "background": "transparent",
            "input_fidelity": "high", "moderation": "low", "user": "end-user-7"}
    async with serve(deps) as client:
        who = await new_customer(deps, credits=20)
        answer = (await client.post(EDIT, json=body, headers=who.headers)).json()
        task = (await client.get(f"/api/v1/tasks/{answer['data']['task_id']}", headers=who.headers)).json()
        image = (await client.get(answer["data"]["urls"][0])).content
    assert answer["code"] == 0 and answer["data"]["task_status"] == "succeeded", answer
    [sent] = fake.requests
    assert (sent["path"], sent.get("json")) == ("edits", True)  # moderation: only the JSON edit body has it
    assert {k: sent[k] for k in ("output_format", "output_compression", "background", "input_fidelity",
                                 "moderation", "user")} == {
        "output_format": "webp", "output_compression": 30, "background": "transparent", "input_fidelity": "high",
        "moderation": "low", "user": "end-user-7"}
    assert is_webp(image) and alpha_of(image) == (0, 255)
    assert task["result"]["media"][0]["mimeType"] == "image/webp" and task["result"]["provider"] == "openai"
    assert "requestOptions" not in str(task)  # kept with the task, never shown
    assert fake.violations == [] and (await audit(deps, who.account_id)).balance == 20 - 4


async def test_the_image_edit_api_jpeg_goes_as_the_multipart_edit(upstream: tuple[FakeOpenAI, Any]) -> None:
    fake, deps = upstream
    body = {"images": [{"image_url": png_data_url()}], "prompt": "x", "model": "gpt-image-1.5",
            "output_format": "jpeg", "output_compression": 15, "input_fidelity": "low", "user": "u-9",
            "background": "opaque", "size": "1024x1536"}
    async with serve(deps) as client:
        who = await new_customer(deps, credits=20)
        answer = (await client.post(EDIT, json=body, headers=who.headers)).json()
        image = (await client.get(answer["data"]["urls"][0])).content
    [sent] = fake.requests
    assert "json" not in sent and "moderation" not in sent["parts"]
    assert {k: sent[k] for k in ("output_format", "output_compression", "input_fidelity", "user", "background",
                                 "size")} == {"output_format": "jpeg", "output_compression": "15",
                                              "input_fidelity": "low", "user": "u-9", "background": "opaque",
                                              "size": "1024x1536"}
    assert image.startswith(JPEG) and alpha_of(image) is None and fake.violations == []


# --- the OpenAI-compatible door, through the official SDK ---------------------------------------------

async def test_the_openai_door_generates_with_every_option(upstream: tuple[FakeOpenAI, Any]) -> None:
    fake, deps = upstream
    who = await new_customer(deps, credits=20)
    async with live(deps) as url, openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=who.api_key,
                                                     max_retries=0) as client:
        answer = await client.images.generate(model="gpt-image-1.5", prompt="a glass fox", output_format="webp",
                                              output_compression=40, background="transparent", moderation="low",
                                              user="end-user-8")
    [sent] = fake.requests
    assert sent["path"] == "generations" and {k: sent[k] for k in (
        "output_format", "output_compression", "background", "moderation", "user")} == {
        "output_format": "webp", "output_compression": 40, "background": "transparent", "moderation": "low",
        "user": "end-user-8"}
    data = base64.b64decode(answer.data[0].b64_json or "")
    assert is_webp(data) and alpha_of(data) == (0, 255)
    assert (answer.output_format, answer.background) == ("webp", "transparent")
    assert fake.violations == [] and (await audit(deps, who.account_id)).balance == 20 - 4


async def test_the_openai_door_edits_with_fidelity_format_compression_and_user(
        upstream: tuple[FakeOpenAI, Any]) -> None:
    fake, deps = upstream
    who = await new_customer(deps, credits=20)
    picture = base64.b64decode(png_data_url().split(",", 1)[1])
    async with live(deps) as url, openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=who.api_key,
                                                     max_retries=0) as client:
        answer = await client.images.edit(model="gpt-image-1.5", prompt="ink it", image=[("a.png", picture,
                                                                                          "image/png")],
                                          input_fidelity="high", output_format="jpeg", output_compression=20,
                                          user="end-user-9")
    [sent] = fake.requests
    assert {k: sent[k] for k in ("output_format", "output_compression", "input_fidelity", "user")} == {
        "output_format": "jpeg", "output_compression": "20", "input_fidelity": "high", "user": "end-user-9"}
    data = base64.b64decode(answer.data[0].b64_json or "")
    assert data.startswith(JPEG) and answer.output_format == "jpeg" and answer.background == "opaque"


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "qwen-image", "user": "u-1"}, "user"),
    ({"model": "qwen-image", "moderation": "low"}, "moderation"),
    ({"model": "grok-imagine", "output_compression": 50}, "output_compression"),
    ({"model": "gpt-image-1.5", "input_fidelity": "high"}, "input_fidelity"),  # a generation has no input image
    ({"model": "gpt-image-1.5", "output_format": "jpeg", "background": "transparent"}, "background"),
    ({"model": "gpt-image-1.5", "output_compression": 50}, "output_compression"),  # png is lossless
])
async def test_an_option_the_model_cannot_honour_is_refused_before_anything_is_reserved(
        upstream: tuple[FakeOpenAI, Any], body: dict[str, Any], param: str) -> None:
    fake, deps = upstream
    async with serve(deps) as client:
        who = await new_customer(deps, credits=20)
        answer = await client.post("/v1/images/generations", json={"prompt": "x", **body}, headers=who.headers)
    assert answer.status_code == 400 and answer.json()["error"]["param"] == param, answer.text
    assert fake.requests == [] and (await audit(deps, who.account_id)).balance == 20


async def test_the_task_api_takes_no_request_options(make_deps: Callable[..., Any]) -> None:
    deps = await make_deps(run_worker=False)
    async with serve(deps) as client:
        who = await new_customer(deps, credits=20)
        smuggled = await create(client, who, model="gpt-image-1-5", params={"requestOptions": {"user": "x"}})
        top = await create(client, who, model="gpt-image-1-5", output_format="webp")
    assert smuggled.status_code == 422 and [d["field"] for d in smuggled.json()["error"]["details"]] == [
        "params.requestOptions"]
    assert top.status_code == 422 and [d["field"] for d in top.json()["error"]["details"]] == ["output_format"]


async def test_the_relay_route_gets_the_options_and_the_output_is_in_the_format_asked() -> None:
    """A relay speaks the same page, so the options go as they are named there; an image it
    returns in another format (this fake always answers PNG) is re-encoded to the one asked."""
    job = dataclasses.replace(make_job("gpt-image-1-5", refs=(reference(),)), options=RequestOptions(
        output_format="webp", output_compression=55, background="opaque", input_fidelity="high", moderation="low",
        user="u-4"))
    async with FakeRelay("sk-relay") as fake, routed((route("relay", "gpt-image-1.5", fake.url), "sk-relay")) as relay:
        [image] = (await relay.run(job)).images
    [sent] = fake.requests
    assert {k: sent[k] for k in ("output_format", "output_compression", "background", "input_fidelity",
                                 "moderation", "user")} == {
        "output_format": "webp", "output_compression": 55, "background": "opaque", "input_fidelity": "high",
        "moderation": "low", "user": "u-4"}
    assert is_webp(image.data) and image.mime_type == "image/webp" and fake.violations == []


# --- the sandbox: the bytes, mimeType and pixels that were asked ---------------------------------------

def sandbox(**options: Any) -> tuple[bytes, str]:
    job = dataclasses.replace(make_job("gpt-image-1-5"), options=RequestOptions(**options))
    made = render(job, [])
    return made.data, made.mime_type


@pytest.mark.parametrize(("options", "mime", "alpha"), [
    ({}, "image/png", None),
    ({"output_format": "webp"}, "image/webp", None),
    ({"output_format": "jpeg", "output_compression": 50}, "image/jpeg", None),
    ({"background": "transparent"}, "image/png", (0, 255)),
    ({"output_format": "webp", "background": "transparent", "output_compression": 60}, "image/webp", (0, 255)),
    ({"background": "opaque", "moderation": "low", "user": "u", "input_fidelity": "high"}, "image/png", None),
])
def test_the_sandbox_makes_the_format_and_alpha_asked(options: dict[str, Any], mime: str,
                                                     alpha: tuple[int, int] | None) -> None:
    data, made_mime = sandbox(**options)
    assert made_mime == mime
    starts = {"image/png": PNG, "image/jpeg": JPEG}
    assert is_webp(data) if mime == "image/webp" else data.startswith(starts[mime])
    assert alpha_of(data) == alpha
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (1024, 1024) and image.format.lower() == mime.split("/")[1]  # type: ignore[union-attr]


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_the_sandboxs_compression_changes_the_size(fmt: str) -> None:
    small, _ = sandbox(output_format=fmt, output_compression=5)
    large, _ = sandbox(output_format=fmt, output_compression=100)
    assert len(small) * 2 < len(large)


async def test_the_doors_on_the_sandbox_return_what_was_asked(make_deps: Callable[..., Any]) -> None:
    deps = await make_deps(sandbox_latency_ms="10")
    async with serve(deps) as client:
        who = await new_customer(deps, credits=40)
        made = (await client.post("/v1/images/generations", headers=who.headers, json={
            "model": "gpt-image-1.5", "prompt": "x", "output_format": "webp", "background": "transparent"})).json()
        edited = (await client.post(EDIT, headers=who.headers, json={
            "images": [{"image_url": png_data_url()}], "prompt": "x", "model": "gpt-image-1.5",
            "output_format": "jpeg", "output_compression": 70})).json()
        task = (await client.get(f"/api/v1/tasks/{edited['data']['task_id']}", headers=who.headers)).json()
        jpeg = (await client.get(edited["data"]["urls"][0])).content
    webp = base64.b64decode(made["data"][0]["b64_json"])
    assert is_webp(webp) and alpha_of(webp) == (0, 255) and made["background"] == "transparent"
    assert jpeg.startswith(JPEG) and task["result"]["media"][0]["mimeType"] == "image/jpeg"
    assert task["result"]["sandbox"] is True


# --- the catalog declares them ---------------------------------------------------------------------------

def test_only_gpt_image_declares_request_options_and_they_read_typed() -> None:
    declared = {spec.id for spec in CATALOG if spec.request_options.model_dump(exclude_none=True)}
    assert declared == {"gpt-image-1-5"}
    spec = CATALOG.get("gpt-image-1-5")
    assert spec is not None
    options, problems = read_options(spec, {"output_format": "webp", "output_compression": "35", "user": "",
                                            "background": "auto"}, {}, edit=False)
    assert problems == [] and options == RequestOptions(output_format="webp", output_compression=35, background="auto")
    assert RequestOptions.from_stored(options.stored()) == options
    png_100, problems = read_options(spec, {"output_compression": 100}, {}, edit=False)
    assert problems == [] and png_100.output_compression is None  # 100 with png: what png is anyway


@pytest.mark.parametrize("change", [
    {"request_options": {"output_format": ["jpeg"]}},  # the default format must be among them
    {"request_options": {"background": ["glass"]}},
    {"params": [*NEW_MODEL["params"], {"key": "requestOptions", "type": "text", "label": "x"}]},  # reserved
])
def test_a_model_file_with_bad_request_options_stops_the_load(tmp_path: Path, change: dict[str, Any]) -> None:
    write_model(tmp_path, {**NEW_MODEL, **change})
    with pytest.raises(CatalogError):
        load_catalog(tmp_path)
