"""xAI Grok Imagine for ``grok-imagine`` over REST, shared/upstreams.md §2.

Text-to-image: ``POST /v1/images/generations``; with one reference: ``POST /v1/images/edits``
(JSON only; the reference as a ``data:`` URL in ``image``). ``size`` is never sent (older
models reject it). An edit sends ``aspect_ratio`` only when the client chose one other than the
catalog default, so that otherwise the output follows the input image's shape (xAI's documented
behaviour without ``aspect_ratio``). ``enable_pro=true`` switches text-to-image to the quality
model (route option ``pro_model``, and ``pro_quality`` for models that take a ``quality`` field
instead); the edit path ignores it (spec §4). Answers may be ``b64_json`` (plain base64, as the
API reference documents; the ``data:`` prefix older guides showed is accepted too) or a
temporary ``url`` (route option ``response_format``), fetched from xAI's hosts.
"""

from __future__ import annotations

from typing import Any

from sfumato.providers.base import Job, OutputImage, Outputs, ProviderError
from sfumato.providers.errors import ContentPolicyViolation, UpstreamBadResponse, for_status
from sfumato.providers.http import Answer
from sfumato.providers.images import b64_bytes, data_url, decode_image
from sfumato.providers.upstream import Upstream

DEFAULT_BASE_URL = "https://api.x.ai"
DOWNLOAD_HOSTS = ("*.x.ai", "x.ai")
MAX_REFERENCES = 1
ASPECT_RATIO = {"1:1": "1:1", "2:3": "2:3", "3:2": "3:2", "16:9": "16:9", "9:16": "9:16"}
"""sfumato ``aspect_ratio`` → xAI ``aspect_ratio`` (same names; xAI picks the pixels, ~1 MP)."""


def chosen(job: Job, key: str) -> bool:
    """Whether the client chose ``key``: the adapter sees the catalog's defaults filled in, so a
    value equal to the default counts as not chosen."""
    spec = job.model.param(key)
    return key in job.params and (spec is None or job.params[key] != spec.default)


def error_for(answer: Answer) -> ProviderError:
    """xAI answers a flat ``{"code", "error"}`` (or OpenAI's nested form); a moderation refusal
    says so in its message."""
    try:
        body = answer.json_object()
    except UpstreamBadResponse:
        body = {}
    error = body.get("error")
    message = str((error.get("message") if isinstance(error, dict) else error) or body.get("code")
                  or f"xAI answered HTTP {answer.status}.")
    if "moderation" in message.lower():
        return ContentPolicyViolation(f"xAI refused the request: {message}")
    return for_status(answer.status, f"xAI: {message}", answer.retry_after)


class XaiProvider:
    name = "xai"
    supports_cancel = False

    def __init__(self, upstream: Upstream):
        self.up = upstream

    def supports(self, job: Job) -> bool:
        return len(job.references) <= MAX_REFERENCES

    def body(self, job: Job, reference: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.up.route.upstream_model,
            "prompt": job.prompt,
            "n": 1,
            "response_format": self.up.option("response_format", "b64_json"),
        }
        if reference is None or chosen(job, "aspect_ratio"):
            body["aspect_ratio"] = ASPECT_RATIO[job.params.get("aspect_ratio", "1:1")]
        if reference is not None:
            body["image"] = {"url": reference, "type": "image_url"}
        elif job.params.get("enable_pro") == "true":
            body["model"] = self.up.option("pro_model", self.up.route.upstream_model)
            if self.up.option("pro_quality"):
                body["quality"] = self.up.option("pro_quality")
        return body

    async def run(self, job: Job) -> Outputs:
        reference = None
        if job.references:
            ref = job.references[0]
            reference = data_url(await ref.load(), ref.mime_type)
        path = "/v1/images/edits" if reference else "/v1/images/generations"
        body = self.body(job, reference)
        answer = await self.up.http.request("POST", f"{self.up.base_url}{path}", json=body, time_limit=self.up.timeout,
                                            headers={"Authorization": f"Bearer {self.up.secret}"})
        if answer.status != 200:
            raise error_for(answer)
        data = answer.json_object().get("data")
        if not isinstance(data, list) or not data:
            raise UpstreamBadResponse("xAI answered without an image.")
        images = [await self._image(item) for item in data]
        return Outputs(images, provider=self.name, info={"upstream_model": body["model"], "route": self.up.route.key})

    async def _image(self, item: object) -> OutputImage:
        if not isinstance(item, dict):
            raise UpstreamBadResponse("xAI answered with an image entry that is not an object.")
        if item.get("respect_moderation") is False:
            raise ContentPolicyViolation("xAI withheld the image by content moderation.")
        if item.get("b64_json"):
            return await decode_image(b64_bytes(item["b64_json"]))
        if isinstance(item.get("url"), str):
            return await self.up.download(item["url"])
        raise UpstreamBadResponse("xAI answered with neither b64_json nor url.")
