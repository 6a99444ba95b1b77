"""Contract tests: each loopback fake driven by the provider's official client, so a fake that
drifts from what the real client sends or can parse fails here, not in production.

- OpenAI: ``openai`` (the answer is also validated strictly against the SDK's response model);
- xAI: ``openai`` too, which xAI documents as a client of its REST image API (the official
  ``xai-sdk`` speaks gRPC; ``@ai-sdk/xai`` is Node), and plain base64 as any client decodes it;
- Google: ``google-genai`` (Vertex AI, its default ``v1beta1`` paths, express mode and a project);
- fal: ``fal-client`` (submit, status polling, result);
- DashScope: ``dashscope`` (``ImageSynthesis.call``: async create, then its own polling).

Each SDK is a dev dependency; one that is not installed skips its test with the reason. The
fakes run in the test's event loop, so synchronous SDKs run in a thread. Only the hosts are
redirected (module-level base URLs, the SDKs' own ``base_url`` options): the requests are the
SDKs' own.
"""

from __future__ import annotations

import asyncio
import base64
import io

import pytest
from PIL import Image

from tests.upstreams.dashscope import FakeDashScope
from tests.upstreams.fal import FakeFal
from tests.upstreams.openai import FakeOpenAI
from tests.upstreams.server import image_bytes
from tests.upstreams.vertex import FakeVertex
from tests.upstreams.xai import FakeXai

NOT_INSTALLED = "{} is not installed here (it is in the dev extra: pip install -e '.[dev]')"


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


async def test_openai_sdk_generates_and_edits_and_the_answer_fits_the_response_schema() -> None:
    openai = pytest.importorskip("openai", reason=NOT_INSTALLED.format("openai"))
    from openai.types import ImagesResponse

    async with FakeOpenAI() as fake:
        client = openai.AsyncOpenAI(api_key=fake.key, base_url=f"{fake.url}/v1", max_retries=0)
        raw = await client.images.with_raw_response.generate(
            model="gpt-image-1.5", prompt="a lighthouse", size="1536x1024", quality="auto")
        strict = ImagesResponse.model_validate(raw.http_response.json())  # the SDK itself parses leniently
        assert strict.quality in ("low", "medium", "high") and strict.size == "1536x1024"
        [image] = raw.parse().data
        assert size_of(base64.b64decode(image.b64_json or "")) == (1536, 1024)
        edited = await client.images.edit(model="gpt-image-1.5", prompt="add a boat", quality="auto",
                                          image=[("a.png", image_bytes(64, 64), "image/png")])
        ImagesResponse.model_validate(edited.model_dump(exclude_unset=True))
        await client.close()
    assert [r["path"] for r in fake.requests] == ["generations", "edits"] and fake.violations == []


@pytest.mark.parametrize("response_format", ["b64_json", "url"])
async def test_openai_sdk_as_xais_documented_client_decodes_plain_base64(response_format: str) -> None:
    openai = pytest.importorskip("openai", reason=NOT_INSTALLED.format("openai"))
    import httpx

    async with FakeXai("xai-key") as fake:
        client = openai.AsyncOpenAI(api_key=fake.key, base_url=f"{fake.url}/v1", max_retries=0)
        answer = await client.images.generate(model="grok-imagine-image", prompt="a fox", n=1,
                                              response_format=response_format,
                                              extra_body={"aspect_ratio": "16:9"})
        await client.close()
        [image] = answer.data
        if response_format == "b64_json":
            data = base64.b64decode(image.b64_json or "", validate=True)  # a data: prefix fails here
        else:
            async with httpx.AsyncClient() as http:
                data = (await http.get(image.url or "")).content
    assert size_of(data) == (1360, 768) and fake.violations == []


@pytest.mark.filterwarnings("ignore:The generate_images method is deprecated")  # Imagen's retirement
@pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning")
@pytest.mark.parametrize("way_in", ["express", "project"])
async def test_google_genai_generates_images_on_vertex_through_its_default_v1beta1_paths(way_in: str) -> None:
    genai = pytest.importorskip("google.genai", reason=NOT_INSTALLED.format("google-genai"))
    from google.genai import types

    async with FakeVertex() as fake:
        options = types.HttpOptions(base_url=fake.url)
        if way_in == "express":
            client = genai.Client(vertexai=True, api_key=fake.api_key, http_options=options)
        else:
            from google.oauth2.credentials import Credentials

            client = genai.Client(vertexai=True, project=fake.project, location="us-central1",
                                  credentials=Credentials(token=fake.token),  # type: ignore[no-untyped-call]
                                  http_options=options)
        answer = await client.aio.models.generate_images(
            model="imagen-4.0-generate-001", prompt="a red fox",
            config=types.GenerateImagesConfig(number_of_images=1, aspect_ratio="16:9", seed=7, add_watermark=False,
                                              output_mime_type="image/png", include_rai_reason=True))
    [generated] = answer.generated_images or []
    assert generated.image is not None and size_of(generated.image.image_bytes or b"") == (1408, 768)
    [sent] = fake.requests
    assert sent["path"].startswith("/v1beta1/") and fake.violations == []
    assert sent["parameters"]["seed"] == 7 and sent["parameters"]["addWatermark"] is False


async def test_fal_client_submits_polls_and_reads_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    fal_client = pytest.importorskip("fal_client", reason=NOT_INSTALLED.format("fal-client"))
    import fal_client.client as fal_module
    import httpx

    async with FakeFal("fal-key") as fake:
        monkeypatch.setattr(fal_module, "QUEUE_URL_FORMAT", f"{fake.url}/")  # the SDK's queue host
        client = fal_client.AsyncClient(key=fake.key)
        handle = await client.submit("fal-ai/qwen-image", arguments={"prompt": "a fox", "image_size": "portrait_16_9",
                                                                     "num_images": 1})
        result = await handle.get(interval=0.01)
        async with httpx.AsyncClient() as http:
            data = (await http.get(result["images"][0]["url"])).content
    assert size_of(data) == (576, 1024)
    [queued] = fake.queue.values()
    assert queued.polls == fake.polls_needed and fake.violations == []


async def test_dashscope_sdk_creates_the_async_task_and_polls_it_to_success(monkeypatch: pytest.MonkeyPatch) -> None:
    dashscope = pytest.importorskip("dashscope", reason=NOT_INSTALLED.format("dashscope"))
    from dashscope import ImageSynthesis

    async with FakeDashScope("sk-fake", polls_needed=1) as fake:
        monkeypatch.setattr(dashscope, "base_http_api_url", f"{fake.url}/api/v1")  # the SDK's region host
        answer = await asyncio.to_thread(ImageSynthesis.call, model="qwen-image", prompt="a fox", api_key=fake.key,
                                         size="1664*928", n=1, prompt_extend=True, watermark=False)
    assert answer.status_code == 200, answer
    assert answer.output.task_status == "SUCCEEDED" and answer.output.results[0].url.startswith(fake.url)
    [task] = fake.tasks.values()
    assert task.body["parameters"]["size"] == "1664*928" and fake.violations == []
