"""fal.ai's queue for ``qwen-image`` (text-to-image and the edit app) and ``google-imagen4``,
shared/upstreams.md §4.

Submit ``POST {queue}/{model}`` → poll ``GET {status_url}`` (202 ``IN_QUEUE``/``IN_PROGRESS``,
200 ``COMPLETED``) → ``GET {response_url}`` → download ``images[].url`` from fal's CDN. The URLs
fal returns are used (status and result drop the model path), after checking they are on the
queue host, since the key goes with them. Canceling the run sends ``PUT {cancel_url}``.
The edit app gets ``image_size`` only when the client chose one other than the catalog default,
so that otherwise the output follows the input image's shape.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from sfumato.providers.base import Job, Outputs, ProviderError
from sfumato.providers.errors import ContentPolicyViolation, UpstreamBadResponse, for_status
from sfumato.providers.http import Answer, best_effort
from sfumato.providers.images import data_url
from sfumato.providers.upstream import Upstream

DEFAULT_BASE_URL = "https://queue.fal.run"
DOWNLOAD_HOSTS = ("fal.media", "*.fal.media")
QWEN_IMAGE_SIZE = {k: k for k in ("square", "square_hd", "portrait_4_3", "portrait_16_9",
                                  "landscape_4_3", "landscape_16_9")}
"""sfumato ``image_size`` → fal ``image_size`` preset (the same names, fal toolkit pixels)."""
IMAGEN_ASPECT_RATIO = {k: k for k in ("1:1", "16:9", "9:16", "3:4", "4:3")}
"""sfumato ``aspect_ratio`` → fal imagen4 ``aspect_ratio``; ``negative_prompt`` is not sent
(fal's 2026 schema has none; the task result's ``info.notes`` says so), ``seed`` is an integer."""
PENDING = ("IN_QUEUE", "IN_PROGRESS")
DROPPED_NEGATIVE_PROMPT = "negative_prompt was not sent: fal's imagen4 app takes no negative_prompt."


def chosen(job: Job, key: str) -> bool:
    """Whether the client chose ``key``: the adapter sees the catalog's defaults filled in, so a
    value equal to the default counts as not chosen."""
    spec = job.model.param(key)
    return key in job.params and (spec is None or job.params[key] != spec.default)


def qwen_input(job: Job) -> dict[str, Any]:
    body: dict[str, Any] = {"prompt": job.prompt, "output_format": job.params.get("output_format", "png"),
                            "num_images": 1}
    if not job.references or chosen(job, "image_size"):
        body["image_size"] = QWEN_IMAGE_SIZE[job.params.get("image_size", "square_hd")]
    return body


def imagen_input(job: Job) -> dict[str, Any]:
    body: dict[str, Any] = {"prompt": job.prompt, "num_images": 1, "output_format": "png",
                            "aspect_ratio": IMAGEN_ASPECT_RATIO[job.params.get("aspect_ratio", "1:1")]}
    if job.params.get("seed"):
        body["seed"] = int(job.params["seed"])
    return body


INPUTS: dict[str, Callable[[Job], dict[str, Any]]] = {"qwen-image": qwen_input, "google-imagen4": imagen_input}


def error_for(answer: Answer) -> ProviderError:
    """fal's ``{"detail": str | [{loc, msg, type}]}``; 422 is a validation error."""
    try:
        detail = answer.json_object().get("detail")
    except UpstreamBadResponse:
        detail = None
    message = str(detail if detail is not None else f"fal answered HTTP {answer.status}.")
    if "content_policy" in message or "nsfw" in message.lower():
        return ContentPolicyViolation(f"fal refused the request: {message}")
    return for_status(answer.status, f"fal: {message[:500]}", answer.retry_after)


class _Gone(Exception):
    """A resumed request is unknown to fal (expired, or canceled by an earlier attempt)."""


class FalQueueProvider:
    name = "fal"
    supports_cancel = True

    def __init__(self, upstream: Upstream):
        self.up = upstream

    def supports(self, job: Job) -> bool:
        if job.model.id not in INPUTS:
            return False
        return not job.references or (len(job.references) == 1 and self.up.route.edit_model is not None)

    @property
    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Key {self.up.secret}"}

    async def run(self, job: Job) -> Outputs:
        handle = self._resumed(job)
        output = None
        if handle is not None:
            try:
                output = await self._wait(handle)
            except _Gone:  # expired or canceled meanwhile: submit anew
                output = None
        if output is None:
            handle = await self._submit(job)
            try:
                output = await self._wait(handle)
            except _Gone:
                raise UpstreamBadResponse("fal lost track of the request it just accepted.") from None
        images = output.get("images")
        if not isinstance(images, list) or not images or not all(isinstance(i, dict) for i in images):
            raise UpstreamBadResponse("fal answered without images.")
        if any(output.get("has_nsfw_concepts") or []):
            raise ContentPolicyViolation("fal's safety checker withheld the image.")
        results = [await self.up.download(str(image.get("url"))) for image in images]
        info: dict[str, Any] = {"upstream_model": handle["model"] if handle else "", "route": self.up.route.key}
        if job.model.id == "google-imagen4" and job.params.get("negative_prompt"):
            info["notes"] = [DROPPED_NEGATIVE_PROMPT]
        return Outputs(results, provider=self.name, info=info)

    def _resumed(self, job: Job) -> dict[str, str] | None:
        state = job.resume or {}
        if not state.get("status_url"):
            return None
        return {"model": str(state.get("model", "")), "request_id": str(state.get("request_id", "")),
                **{k: self.up.same_api_host(state.get(k)) for k in ("status_url", "response_url", "cancel_url")}}

    async def _submit(self, job: Job) -> dict[str, str]:
        model = self.up.route.edit_model if job.references else self.up.route.upstream_model
        assert model is not None
        body = INPUTS[job.model.id](job)
        if job.references:
            ref = job.references[0]
            body["image_url"] = data_url(await ref.load(), ref.mime_type)
        answer = await self.up.http.request("POST", f"{self.up.base_url}/{model}", json=body,
                                            headers=self._auth, time_limit=self.up.timeout)
        if answer.status not in (200, 201, 202):
            raise error_for(answer)
        data = answer.json_object()
        handle = {"model": model, "request_id": str(data.get("request_id", "")),
                  **{k: self.up.same_api_host(data.get(k)) for k in ("status_url", "response_url", "cancel_url")}}
        await job.checkpoint(dict(handle))
        return handle

    async def _wait(self, handle: dict[str, str]) -> dict[str, Any]:
        try:
            await self.up.poll(lambda: self._status(handle))
            answer = await self.up.http.request("GET", handle["response_url"], headers=self._auth,
                                                time_limit=self.up.timeout)
        except asyncio.CancelledError:
            await best_effort(self.up.http.request("PUT", handle["cancel_url"], headers=self._auth, time_limit=5.0))
            raise
        if answer.status != 200:
            raise error_for(answer)
        return answer.json_object()

    async def _status(self, handle: dict[str, str]) -> bool | None:
        url = handle["status_url"]
        answer = await self.up.http.request("GET", f"{url}{'&' if '?' in url else '?'}logs=0", headers=self._auth,
                                            time_limit=self.up.timeout)
        if answer.status == 404:
            raise _Gone
        if answer.status not in (200, 202):
            raise error_for(answer)
        status = answer.json_object().get("status")
        if status == "COMPLETED":
            return True
        if status in PENDING:
            return None
        raise UpstreamBadResponse(f"fal reported an unknown request status {str(status)[:40]!r}.")
