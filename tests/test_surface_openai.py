"""The OpenAI-compatible images API, driven by the official ``openai`` SDK against a real
server on loopback: generations and edits (multipart and JSON), the model aliases, params
mapped onto the catalog, OpenAI's error envelope, and credits charged as for tasks."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

from sfumato.api.surfaces.openai_params import to_task
from sfumato.catalog import load_catalog
from sfumato.catalog.options import RequestOptions
from sfumato.errors import ValidationFailed
from tests.conftest import Customer, new_customer
from tests.money import audit
from tests.test_client import live


def png(width: int = 40, height: int = 30) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "orange").save(buffer, "PNG")
    return buffer.getvalue()


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


@pytest.fixture
async def sdk(make_deps: Callable[..., Any]) -> AsyncIterator[tuple[openai.AsyncOpenAI, Customer, Any, str]]:
    deps = await make_deps(sandbox_latency_ms="20")
    who = await new_customer(deps, credits=100)
    async with live(deps) as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=who.api_key, max_retries=0, timeout=30)
        yield client, who, deps, url
        await client.close()


async def test_generations_through_the_sdk_for_every_model(sdk: tuple[openai.AsyncOpenAI, Customer, Any, str]) -> None:
    client, who, deps, _ = sdk
    cases = [("gpt-image-1.5", {"size": "1536x1024", "quality": "high"}, (1536, 1024)),
             ("gpt-image-1-5", {}, (1024, 1024)),
             ("qwen-image", {"size": "1024x576", "output_format": "jpeg"}, (1024, 576)),
             ("google-imagen4", {"size": "1408x768"}, (1408, 768)),
             ("grok-imagine", {}, None)]
    for model, extra, size in cases:
        answer = await client.images.generate(model=model, prompt="a lighthouse at dusk", **extra)
        [image] = answer.data
        assert image.b64_json, model
        data = base64.b64decode(image.b64_json)
        if size:
            assert size_of(data) == size and answer.size == f"{size[0]}x{size[1]}"
    two = await client.images.generate(model="qwen-image", prompt="two foxes", n=2, response_format="url")
    assert len(two.data) == 2 and all(d.url and d.url.startswith("http") for d in two.data)
    books = await audit(deps, who.account_id)
    assert books.spent == 4 + 4 + 4 + 8 + 4 + 2 * 4 and books.held == 0


async def test_edits_multipart_and_json(sdk: tuple[openai.AsyncOpenAI, Customer, Any, str]) -> None:
    client, who, _, url = sdk
    edited = await client.images.edit(model="gpt-image-1.5", prompt="make it night", size="1024x1536",
                                      image=[("a.png", png(), "image/png"), ("b.png", png(20, 20), "image/png")])
    assert size_of(base64.b64decode(edited.data[0].b64_json or "")) == (1024, 1536)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {who.api_key}"}) as http:
        data_url = "data:image/png;base64," + base64.b64encode(png()).decode()
        answer = await http.post("/v1/images/edits", json={"model": "qwen-image", "prompt": "ink it",
                                                            "images": [{"image_url": data_url}]})
        uploaded = (await http.post("/api/v1/files", files={"file": ("c.png", png(), "image/png")})).json()
        by_id = await http.post("/v1/images/edits", json={"model": "grok-imagine", "prompt": "ink it",
                                                           "images": [{"file_id": uploaded["id"]}]})
        remote = await http.post("/v1/images/edits", json={"model": "qwen-image", "prompt": "x",
                                                            "images": [{"image_url": "https://example.com/a.png"}]})
    assert answer.status_code == 200 and answer.json()["data"][0]["b64_json"]
    assert by_id.status_code == 200
    assert remote.status_code == 400 and remote.json()["error"]["param"] == "images[0]"  # nothing is fetched


async def test_errors_come_in_openais_envelope(sdk: tuple[openai.AsyncOpenAI, Customer, Any, str]) -> None:
    client, _, deps, url = sdk
    with pytest.raises(openai.BadRequestError) as bad_size:
        await client.images.generate(model="gpt-image-1.5", prompt="x", size="256x256")
    assert bad_size.value.body["param"] == "size" and bad_size.value.body["code"] == "invalid_value"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as bad_model:
        await client.images.generate(model="dall-e-3", prompt="x")
    assert bad_model.value.body["param"] == "model"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as too_many:
        await client.images.edit(model="qwen-image", prompt="x", image=[("a.png", png(), "image/png")] * 2)
    assert too_many.value.param == "image" and "qwen-image takes 1 image" in too_many.value.message
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="sk-sf_wrong", max_retries=0) as stranger:
        with pytest.raises(openai.AuthenticationError):
            await stranger.images.generate(model="qwen-image", prompt="x")
    poor = await new_customer(deps, credits=3, name="poor")
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=poor.api_key, max_retries=0) as broke:
        with pytest.raises(openai.APIStatusError) as no_credit:
            await broke.images.generate(model="qwen-image", prompt="x")
    assert no_credit.value.status_code == 402 and (await audit(deps, poor.account_id)).balance == 3


async def test_a_failed_task_is_an_error_and_refunded(make_deps: Callable[..., Any]) -> None:
    deps = await make_deps(sandbox_latency_ms="10", sandbox_failure_rate=1.0)
    who = await new_customer(deps, credits=20)
    async with live(deps) as url, openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=who.api_key,
                                                     max_retries=0) as client:
        with pytest.raises(openai.APIStatusError) as failed:
            await client.images.generate(model="qwen-image", prompt="x")
    assert failed.value.status_code == 502 and failed.value.body["code"] == "sandbox_failure"  # type: ignore[index]
    assert (await audit(deps, who.account_id)).balance == 20


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "qwen-image", "prompt": "x", "size": "1024x1024", "quality": "high"}, "quality"),
    ({"model": "google-imagen4", "prompt": "x", "output_format": "jpeg"}, "output_format"),
    ({"model": "qwen-image", "prompt": "x", "n": 11}, "n"),
    ({"model": "qwen-image", "prompt": " "}, "prompt"),
    ({"model": "qwen-image", "prompt": "x", "background": "transparent"}, "background"),
    ({"model": "qwen-image", "prompt": "x", "colour": "red"}, "colour"),
    ({"model": "qwen-image", "prompt": "x", "user": "u-1"}, "user"),  # no route of qwen-image passes it on
    ({"model": "google-imagen4", "prompt": "x", "moderation": "low"}, "moderation"),
    ({"model": "gpt-image-1.5", "prompt": "x", "output_format": "gif"}, "output_format"),
    ({"model": "gpt-image-1.5", "prompt": "x", "output_compression": 101}, "output_compression"),
    ({"model": "gpt-image-1.5", "prompt": "x", "output_format": "jpeg", "output_compression": "050"},
     "output_compression"),
    ({"model": "gpt-image-1.5", "prompt": "x", "output_format": "jpeg", "background": "transparent"}, "background"),
    ({"model": "gpt-image-1.5", "prompt": "x", "input_fidelity": "high"}, "input_fidelity"),
    ({"model": "gpt-image-1.5", "prompt": "x", "user": "u" * 513}, "user"),
])
def test_unmappable_values_name_their_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        to_task(body, load_catalog())
    assert refused.value.details[0].field == param


def test_request_options_map_onto_the_models_declaration() -> None:
    catalog = load_catalog()
    asked = to_task({"model": "gpt-image-1.5", "prompt": "x", "output_format": "webp", "output_compression": "30",
                     "background": "transparent", "input_fidelity": "low", "moderation": "low", "user": "u"},
                    catalog, edit=True)
    assert asked.options == RequestOptions(output_format="webp", output_compression=30, background="transparent",
                                           input_fidelity="low", moderation="low", user="u")
    assert (asked.output_format, asked.background, asked.params) == ("webp", "transparent", {})
    neutral = to_task({"model": "qwen-image", "prompt": "x", "output_format": "jpeg", "background": "opaque",
                       "moderation": "auto"}, catalog)
    assert neutral.options == RequestOptions() and neutral.params == {"output_format": "jpeg"}
    assert neutral.output_format == "jpeg" and neutral.background == "opaque"


def test_mapping_uses_the_catalogs_sizes() -> None:
    catalog = load_catalog()
    assert to_task({"model": "qwen-image", "prompt": "x", "size": "768x1024"}, catalog).params == {
        "image_size": "portrait_4_3"}
    assert to_task({"model": "gpt-image-1.5", "prompt": "x", "size": "auto", "quality": "auto"},
                   catalog).params == {}


async def test_image_bodies_are_capped_but_large_inline_images_fit(
    sdk: tuple[openai.AsyncOpenAI, Customer, Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sfumato.api import bodies

    _, who, _, url = sdk
    big = io.BytesIO()
    Image.effect_noise((900, 900), 90).convert("RGB").save(big, "PNG")  # ~2 MB: over the task API's 1 MiB cap
    inline = "data:image/png;base64," + base64.b64encode(big.getvalue()).decode()
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {who.api_key}"}, timeout=60) as http:
        fits = await http.post("/v1/images/edits", json={"model": "qwen-image", "prompt": "x",
                                                          "images": [{"image_url": inline}]})
        monkeypatch.setattr(bodies, "IMAGES_LIMIT", 100_000)
        over = await http.post("/v1/images/edits", data={"model": "qwen-image", "prompt": "x"},
                               files={"image": ("big.png", big.getvalue(), "image/png")})
    assert len(big.getvalue()) > 1024 * 1024 and fits.status_code == 200, fits.text
    assert over.status_code == 413 and over.json()["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize("n", ["\u00b2", "\u0663", "1.0", " 2", "-1", True, 2.5])
def test_n_is_a_plain_count_never_a_crash(n: object) -> None:
    """``"²".isdigit()`` is true and ``int("²")`` raises: such an ``n`` was a 500, now a 400."""
    from sfumato.catalog import load_catalog
    from sfumato.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as info:
        to_task({"model": "gpt-image-1.5", "prompt": "x", "n": n}, load_catalog())
    assert [d.field for d in info.value.details] == ["n"]


@pytest.mark.parametrize("n", ["2", "0002", "000010", 3])
def test_n_may_have_leading_zeros_as_the_document_allows(n: object) -> None:
    from sfumato.catalog import load_catalog

    assert to_task({"model": "gpt-image-1.5", "prompt": "x", "n": n}, load_catalog()).n == int(str(n))
