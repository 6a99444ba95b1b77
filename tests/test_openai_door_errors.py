"""Refusals on the OpenAI-compatible door read as OpenAI's own, as the official ``openai`` SDK
shows them (against the app on loopback): each common mistake raises ``BadRequestError`` whose
``param`` is OpenAI's field (never sfumato's ``referenceMediaItems`` or ``params.aspect_ratio``),
whose ``message`` is a sentence or two naming it, and whose ``code`` is OpenAI's; nothing is
reserved. Also ``quality`` as OpenAI's users send it (``low``, ``standard``, ``hd``), mapped by
the one table both image doors use."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import httpx
import openai
import pytest
from PIL import Image
from sqlalchemy import select, update

from sfumato.api.errors import openai_error
from sfumato.api.surfaces import image_edit, openai_params
from sfumato.catalog import load_catalog
from sfumato.db.models import StoredFile, Task
from sfumato.deps import Deps
from sfumato.errors import FieldError, ValidationFailed
from tests.conftest import Customer, new_customer
from tests.money import audit
from tests.test_client import live

Door = tuple[openai.AsyncOpenAI, Customer, Deps, str]
INTERNAL = ("referenceMediaItems", "params.", "aspect_ratio", "image_size", "gpt-image-1-5", ".;")
"""What an OpenAI client must never read in a refusal: sfumato's names, and the old joined form
(``Invalid value for size.; size: …``)."""


def png(width: int = 40, height: int = 30) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "orange").save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
async def door(make_deps: Callable[..., Any]) -> AsyncIterator[Door]:
    deps = await make_deps(sandbox_latency_ms="10")
    who = await new_customer(deps, credits=100)
    async with live(deps) as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=who.api_key, max_retries=0, timeout=30)
        yield client, who, deps, url
        await client.close()


GENERATE_MISTAKES = [  # what the SDK is asked (over a valid gpt-image-1.5 request), then param, code, message
    ({"size": "256x256"}, "size", "invalid_value",
     "Invalid value for 'size': '256x256'. gpt-image-1.5 makes 1024x1024, 1536x1024 or 1024x1536 (or auto)."),
    ({"model": "qwen-image", "size": "1536x1024"}, "size", "invalid_value",
     "Invalid value for 'size': '1536x1024'. qwen-image makes 1024x1024, 512x512, 768x1024, 576x1024, 1024x768 "
     "or 1024x576 (or auto)."),
    ({"quality": "ultra"}, "quality", "invalid_value",
     "Invalid value for 'quality': 'ultra'. gpt-image-1.5 takes quality auto, low, medium, high, standard or hd."),
    ({"model": "qwen-image", "quality": "hd"}, "quality", "invalid_value",
     "Invalid value for 'quality': 'hd'. qwen-image has one quality: send auto or standard, or leave quality out."),
    ({"prompt": openai.NOT_GIVEN}, "prompt", "missing_required_parameter", "Missing required parameter: 'prompt'."),
    ({"prompt": "   "}, "prompt", "invalid_value",
     "Invalid value for 'prompt': it is empty. Describe the image to make."),
    ({"model": "dall-e-3"}, "model", "model_not_found",
     "The model 'dall-e-3' does not exist here; this server has google-imagen4, gpt-image-1.5, grok-imagine and "
     "qwen-image."),
    ({"n": 11}, "n", "integer_above_max_value", "Invalid value for 'n': 11 is above the maximum of 10."),
    ({"n": 0}, "n", "integer_below_min_value", "Invalid value for 'n': 0 is below the minimum of 1."),
    ({"output_format": "gif"}, "output_format", "invalid_value",
     "Invalid value for 'output_format': 'gif'. gpt-image-1.5 takes output_format png, jpeg, webp."),
    ({"model": "qwen-image", "output_format": "webp"}, "output_format", "invalid_value",
     "Invalid value for 'output_format': 'webp'. qwen-image makes png or jpeg (or auto)."),
    ({"output_format": "jpeg", "background": "transparent"}, "background", "invalid_value",
     "Invalid value for 'background': 'transparent'. A transparent background needs output_format png or webp; "
     "jpeg has no alpha channel."),
    ({"response_format": "png"}, "response_format", "invalid_value",
     "Invalid value for 'response_format': 'png'. Send b64_json or url."),
    ({"extra_body": {"colour": "red"}}, "colour", "unknown_parameter", "Unknown parameter: 'colour'."),
    # refused by the task service (validate_task_request names it "prompt" too, after the door's checks)
    ({"model": "qwen-image", "prompt": "x" * 5001}, "prompt", "invalid_value",
     "Invalid value for 'prompt': the prompt has 5001 characters; this model allows 5000."),
]


@pytest.mark.parametrize(("change", "param", "code", "message"), GENERATE_MISTAKES,
                         ids=[f"{m[1]}-{m[2]}-{i}" for i, m in enumerate(GENERATE_MISTAKES)])
async def test_each_generate_mistake_names_openais_param_in_a_sentence(
        door: Door, change: dict[str, Any], param: str, code: str, message: str) -> None:
    client, who, deps, _ = door
    with pytest.raises(openai.BadRequestError) as refused:
        await client.images.generate(**{"model": "gpt-image-1.5", "prompt": "a lighthouse", **change})
    error = refused.value
    assert (error.status_code, error.param, error.code, error.body["message"]) == (400, param, code, message)  # type: ignore[index]
    assert error.message == f"Error code: 400 - {message}"  # as the SDK shows it (str(error))
    assert error.type == "invalid_request_error" and not any(word in error.message for word in INTERNAL)
    books = await audit(deps, who.account_id)
    assert books.balance == 100 and not books.statuses  # refused before anything is reserved


async def test_edit_mistakes_name_the_image_field_they_came_in(door: Door) -> None:
    client, who, deps, url = door
    picture = ("a.png", png(), "image/png")
    with pytest.raises(openai.BadRequestError) as too_many:
        await client.images.edit(model="qwen-image", prompt="ink it", image=[picture, picture])
    with pytest.raises(openai.BadRequestError) as no_edits:
        await client.images.edit(model="google-imagen4", prompt="ink it", image=picture)
    with pytest.raises(openai.BadRequestError) as not_an_image:
        await client.images.edit(model="gpt-image-1.5", prompt="ink it", image=("a.gif", b"GIF89a....", "image/gif"))
    with pytest.raises(openai.BadRequestError) as masked:
        await client.images.edit(model="gpt-image-1.5", prompt="ink it", image=picture, mask=picture)
    with pytest.raises(openai.BadRequestError) as low_fidelity_generate:
        await client.images.generate(model="gpt-image-1.5", prompt="x", extra_body={"input_fidelity": "high"})
    async with httpx.AsyncClient(base_url=url, headers=who.headers, timeout=30) as http:
        no_images = (await http.post("/v1/images/edits", json={"model": "qwen-image", "prompt": "ink it"})).json()
        bad_base64 = (await http.post("/v1/images/edits", json={
            "model": "qwen-image", "prompt": "ink it", "images": [{"image_url": "data:image/png;base64,@@"}]})).json()
    seen = [(e.value.param, e.value.code, e.value.body["message"]) for e in (too_many, no_edits, not_an_image, masked,
                                                                     low_fidelity_generate)]
    assert seen == [
        ("image", "invalid_value", "Invalid value for 'image': 2 images sent; qwen-image takes 1 image."),
        ("image", "invalid_value", "Invalid value for 'image': google-imagen4 takes no input images; make images "
                                   "with it at /v1/images/generations."),
        ("image", "invalid_value", "Unsupported file type: only JPEG, PNG and WebP images are accepted."),
        ("mask", "invalid_value", "Invalid value for 'mask': masks are not supported here; describe the change in "
                                  "the prompt."),
        ("input_fidelity", "invalid_value", "Invalid value for 'input_fidelity': 'high'. input_fidelity applies to "
                                            "edits (requests with input images)."),
    ]
    assert no_images["error"] == {"message": "Missing required parameter: 'images'.", "type": "invalid_request_error",
                                  "param": "images", "code": "missing_required_parameter"}
    assert bad_base64["error"]["param"] == "images[0]"
    assert bad_base64["error"]["message"] == "Invalid value for 'images[0]': not valid base64."
    books = await audit(deps, who.account_id)
    assert books.balance == 100 and not books.statuses


async def test_a_refusal_of_the_task_service_is_translated_to_openais_names(door: Door) -> None:
    """An expired file passes the door (it is this account's) and is refused by the references
    check, which names ``params.referenceMediaItems[0].url``: the client reads ``images[0]``."""
    _, who, deps, url = door
    async with httpx.AsyncClient(base_url=url, headers=who.headers, timeout=30) as http:
        uploaded = (await http.post("/api/v1/files", files={"file": ("c.png", png(), "image/png")})).json()
        async with deps.db.write() as session:
            await session.execute(update(StoredFile).where(StoredFile.id == uploaded["id"]).values(
                expires_at=deps.clock.now() - timedelta(seconds=1)))
        answer = await http.post("/v1/images/edits", json={"model": "gpt-image-1.5", "prompt": "ink it",
                                                            "images": [{"image_url": png_url()},
                                                                       {"file_id": uploaded["id"]}]})
    assert answer.status_code == 400
    assert answer.json()["error"] == {
        "message": "Invalid value for 'images[1]': this file has expired; upload it again.",
        "type": "invalid_request_error", "param": "images[1]", "code": "invalid_value"}
    assert (await audit(deps, who.account_id)).balance == 100


def png_url() -> str:
    return "data:image/png;base64," + base64.b64encode(png()).decode()


@pytest.mark.parametrize(("field", "model", "images", "openai_name"), [
    ("params.referenceMediaItems[3].url", "gpt-image-1-5", "image", "image"),
    ("params.referenceMediaItems[3].url", "gpt-image-1-5", "images", "images[3]"),
    ("params.referenceMediaItems", "qwen-image", "images", "images"),
    ("params.aspect_ratio", "gpt-image-1-5", "image", "size"),
    ("params.image_size", "qwen-image", "image", "size"),
    ("params.output_format", "qwen-image", "image", "output_format"),
    ("params.quality", "gpt-image-1-5", "image", "quality"),
    ("file", "gpt-image-1-5", "images", "images"),
    ("prompt", "qwen-image", "image", "prompt"),
    ("params.seed", "google-imagen4", "image", "seed"),  # not OpenAI's: at least never "params."
])
def test_the_one_table_names_sfumatos_fields_as_openai_does(field: str, model: str, images: str,
                                                             openai_name: str) -> None:
    spec = load_catalog().get(model)
    assert spec is not None
    assert openai_params.openai_field(field, spec, images) == openai_name


def test_a_translated_refusal_is_one_sentence_per_problem() -> None:
    spec = load_catalog().get("gpt-image-1-5")
    assert spec is not None
    with pytest.raises(ValidationFailed) as translated, openai_params.in_openai_terms(spec):
        raise ValidationFailed(details=[
            FieldError("params.referenceMediaItems", "gpt-image-1-5 takes at most 16 reference file(s); got 17."),
            FieldError("prompt", "The prompt must contain visible text, not only invisible or control characters.")])
    body = openai_error(400, translated.value.code, translated.value.message, translated.value.details)["error"]
    assert body == {"message": "Invalid value for 'image': gpt-image-1.5 takes at most 16 reference file(s); got 17. "
                               "Invalid value for 'prompt': the prompt must contain visible text, not only invisible "
                               "or control characters.",
                    "type": "invalid_request_error", "param": "image", "code": "invalid_value"}


def test_a_refusal_already_in_openais_terms_passes_unchanged() -> None:
    spec = load_catalog().get("gpt-image-1-5")
    assert spec is not None
    with pytest.raises(ValidationFailed) as kept, openai_params.in_openai_terms(spec):
        raise openai_params.refused("n", "Invalid value for 'n': 11 is above the maximum of 10.",
                                    "integer_above_max_value")
    assert (kept.value.message, kept.value.code, [d.field for d in kept.value.details]) == (
        "Invalid value for 'n': 11 is above the maximum of 10.", "integer_above_max_value", ["n"])


async def _params_by_task(deps: Deps, account_id: str) -> dict[str, dict[str, Any]]:
    async with deps.db.read() as session:
        return {task.id: task.params for task in await session.scalars(select(Task).where(
            Task.account_id == account_id))}


async def test_quality_as_openais_users_send_it_is_mapped_by_the_table(door: Door) -> None:
    """What the task got (its stored params, defaults filled in by the catalog) and what the
    answer echoes, per ``quality`` sent."""
    client, who, deps, _ = door
    got = []
    for model, quality in (("gpt-image-1.5", "low"), ("gpt-image-1.5", "standard"), ("gpt-image-1.5", "hd"),
                           ("gpt-image-1.5", "auto"), ("gpt-image-1.5", "medium"), ("qwen-image", "standard")):
        before = await _params_by_task(deps, who.account_id)
        answer = await client.images.generate(model=model, prompt="a fox", quality=quality)  # type: ignore[arg-type]
        [params] = [p for task_id, p in (await _params_by_task(deps, who.account_id)).items() if task_id not in before]
        got.append((quality, answer.quality, params.get("quality")))
    assert got == [("low", "medium", "medium"), ("standard", "auto", "medium"), ("hd", "high", "high"),
                   ("auto", "auto", "medium"), ("medium", "medium", "medium"), ("standard", "auto", None)]
    assert (await audit(deps, who.account_id)).statuses["succeeded"] == 6


def test_both_doors_map_quality_and_size_by_the_same_table() -> None:
    spec = load_catalog().get("gpt-image-1-5")
    assert spec is not None
    page = ("auto", "low", "medium", "high")  # the image-edit page's qualities
    shared = {value: openai_params.QUALITY[value] for value in page}
    assert shared == image_edit.QUALITY
    assert image_edit.QUALITY["low"] == "medium" and image_edit.QUALITY["auto"] is None
    assert image_edit.SIZES == openai_params.sizes_of(spec) == {
        "auto": None, "1024x1024": "1:1", "1536x1024": "3:2", "1024x1536": "2:3"}
