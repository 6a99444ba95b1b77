"""OpenAI Images for ``gpt-image-1-5`` (upstream ``gpt-image-1.5``), shared/upstreams.md §1.

Text-to-image: ``POST /images/generations`` (JSON). With references: ``POST /images/edits``
(multipart, one ``image[]`` part per reference, up to 16, as the official SDK sends it). The
multipart form has no ``moderation`` field, so an edit that asks for moderation goes as the
JSON edit body (§1.3: ``images`` as ``data:`` URLs), which has it. GPT image models always
answer ``b64_json``.

The request options (``Job.options``) go as OpenAI names them: ``output_format``,
``output_compression`` (jpeg and webp only), ``background``, ``moderation``, ``user``, and
``input_fidelity`` on edits (generations have no such field).

With ``Job.partial_images`` (1 to 3) the request asks for ``stream: true`` and that many
``partial_images`` and reads OpenAI's image event stream (§1.5): each
``image_generation.partial_image`` / ``image_edit.partial_image`` goes to ``Job.on_partial`` as
it arrives, the ``….completed`` event is the output. An ``error`` event is classified like an
error answer; a stream that ends before ``completed`` is a broken connection (retryable).

Why not the official SDK: openai-python 3.x brings its own HTTP stack (httpx2/httpcore2); one
shared client for every upstream keeps one pool, one set of time limits and one place where
transport errors are classified (docs/providers.md).
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from sfumato.providers import sse
from sfumato.providers.base import Job, Outputs, ProviderError
from sfumato.providers.errors import ContentPolicyViolation, UpstreamBadResponse, UpstreamUnavailable, for_status
from sfumato.providers.http import MAX_JSON_BYTES, Answer, read_capped
from sfumato.providers.images import b64_bytes, data_url, decode_image
from sfumato.providers.upstream import Upstream

DEFAULT_BASE_URL = "https://api.openai.com/v1"
MAX_REFERENCES = 16
SIZE = {"1:1": "1024x1024", "3:2": "1536x1024", "2:3": "1024x1536"}
"""sfumato ``aspect_ratio`` → OpenAI ``size`` (the only three sizes GPT image models make)."""
QUALITY = {"medium": "medium", "high": "high"}
"""sfumato ``quality`` → OpenAI ``quality``."""
OUTPUT_FORMAT = "png"
"""The catalog's format for this model unless asked otherwise; sent explicitly so the answer
cannot drift."""


def wire_params(job: Job, upstream_model: str) -> dict[str, Any]:
    """The fields generations and edits share (a multipart form sends each as a string)."""
    options = job.options
    fmt = options.output_format or OUTPUT_FORMAT
    fields: dict[str, Any] = {
        "model": upstream_model,
        "prompt": job.prompt,
        "n": 1,
        "size": SIZE[job.params.get("aspect_ratio", "1:1")],
        "quality": QUALITY[job.params.get("quality", "medium")],
        "output_format": fmt,
    }
    asked = {"output_compression": options.output_compression if fmt != "png" else None,
             "background": options.background, "moderation": options.moderation, "user": options.user,
             "input_fidelity": options.input_fidelity if job.references else None}
    fields.update({key: value for key, value in asked.items() if value is not None})
    if job.partial_images:
        fields.update(stream=True, partial_images=job.partial_images)
    return fields


def error_for(answer: Answer) -> ProviderError:
    """OpenAI's envelope ``{"error": {message, type, param, code}}``; a safety refusal is a 400
    with ``code: moderation_blocked`` (seen in captures, not in the spec)."""
    try:
        error = answer.json_object().get("error") or {}
    except UpstreamBadResponse:
        error = {}
    return _classified(error, answer.status, answer.retry_after)


def _classified(error: Any, status: int, retry_after: float | None = None) -> ProviderError:
    error = error if isinstance(error, dict) else {"message": str(error)}
    message = str(error.get("message") or f"OpenAI answered HTTP {status}.")
    if error.get("code") in ("moderation_blocked", "content_policy_violation") or "safety system" in message:
        return ContentPolicyViolation(f"OpenAI refused the request: {message}")
    return for_status(status, f"OpenAI: {message}", retry_after)


def _event_payload(event: sse.Event) -> dict[str, Any]:
    try:
        payload = json.loads(event.data)
    except ValueError:
        raise UpstreamBadResponse("OpenAI sent an image event that is not JSON.") from None
    if not isinstance(payload, dict):
        raise UpstreamBadResponse("OpenAI sent an image event that is not a JSON object.")
    if event.event == "error" or payload.get("error"):
        # mid-stream, the answer's status is 200 already: a refusal stays a refusal, the rest
        # is the upstream failing (a 5xx as far as retrying goes)
        error = payload.get("error") or payload
        code = error.get("code") if isinstance(error, dict) else None
        raise _classified(error, 400 if code in ("moderation_blocked", "content_policy_violation") else 500)
    return payload


class OpenAIImagesProvider:
    name = "openai"
    supports_cancel = False
    """A canceled HTTP call does not stop (or refund) an OpenAI generation."""

    def __init__(self, upstream: Upstream):
        self.up = upstream

    def supports(self, job: Job) -> bool:
        return len(job.references) <= MAX_REFERENCES

    def _headers(self, job: Job) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.up.secret}"}
        if job.request_id:
            headers["X-Client-Request-Id"] = job.request_id
        return headers

    async def _edit_form(self, job: Job, fields: dict[str, Any]) -> aiohttp.FormData:
        form = aiohttp.FormData(quote_fields=False)
        for name, value in fields.items():
            form.add_field(name, str(value))
        for index, ref in enumerate(job.references):
            extension = ref.mime_type.rsplit("/", 1)[-1]
            form.add_field("image[]", await ref.load(), filename=f"image-{index}.{extension}",
                           content_type=ref.mime_type)
        return form

    async def _request(self, job: Job) -> tuple[str, dict[str, Any]]:
        """The URL and the body (``json`` or multipart ``data``) of the job's request."""
        fields = wire_params(job, self.up.route.upstream_model)
        if not job.references:
            return f"{self.up.base_url}/images/generations", {"json": fields}
        url = f"{self.up.base_url}/images/edits"
        if "moderation" in fields:  # only the JSON edit body has it (upstreams.md §1.2, §1.3)
            images = [{"image_url": data_url(await ref.load(), ref.mime_type)} for ref in job.references]
            return url, {"json": {**fields, "images": images}}
        if "stream" in fields:
            fields["stream"] = "true"  # as the SDK writes a boolean in a form
        return url, {"data": await self._edit_form(job, fields)}

    def _info(self, headers: dict[str, str]) -> dict[str, Any]:
        info = {"upstream_model": self.up.route.upstream_model, "route": self.up.route.key}
        if "x-request-id" in headers:
            info["upstream_request_id"] = headers["x-request-id"]
        return info

    async def run(self, job: Job) -> Outputs:
        url, body = await self._request(job)
        if job.partial_images:
            return await self._streamed(job, url, body)
        answer = await self.up.http.request("POST", url, headers=self._headers(job), time_limit=self.up.timeout,
                                            **body)
        return await self._outputs(answer)

    async def _outputs(self, answer: Answer) -> Outputs:
        if answer.status != 200:
            raise error_for(answer)
        data = answer.json_object().get("data")
        if not isinstance(data, list) or not data or not isinstance(data[0], dict):
            raise UpstreamBadResponse("OpenAI answered without an image.")
        images = [await decode_image(b64_bytes(item.get("b64_json"))) for item in data if isinstance(item, dict)]
        return Outputs(images, provider=self.name, info=self._info(answer.headers))

    async def _streamed(self, job: Job, url: str, body: dict[str, Any]) -> Outputs:
        """Read the image event stream: previews to ``job.on_partial``, the completed image out."""
        async with self.up.http.stream("POST", url, headers=self._headers(job), time_limit=self.up.timeout,
                                       **body) as response:
            headers = {k.lower(): v for k, v in response.headers.items()}
            if response.status != 200 or not response.content_type.startswith("text/event-stream"):
                # an error answers as JSON; so does an upstream that does not stream (one image)
                return await self._outputs(Answer(response.status, headers, await read_capped(response,
                                                                                                MAX_JSON_BYTES)))
            async for event in sse.events(response, MAX_JSON_BYTES):
                payload = _event_payload(event)
                kind = str(payload.get("type") or event.event)
                if kind.endswith(".partial_image"):
                    index = payload.get("partial_image_index")
                    image = await decode_image(b64_bytes(payload.get("b64_json")))
                    await job.on_partial(index if isinstance(index, int) else 0, image)
                elif kind.endswith(".completed"):
                    image = await decode_image(b64_bytes(payload.get("b64_json")))
                    return Outputs([image], provider=self.name, info=self._info(headers))
        raise UpstreamUnavailable("OpenAI's image stream ended before the final image.")
