"""A relay speaking the image-edit API of shared/seeds/image-edit.zh.txt (spec §8), as a route
for ``gpt-image-1-5`` edits.

``POST {base}/api/v1/image/generation`` with ``images: [{image_url}]`` (references inlined as
``data:`` URLs, up to 16) answers the envelope ``{code, data{urls, task_id, task_status, …},
message, request_id}``; ``code`` 0 is success. When ``urls`` is still empty the relay is
working asynchronously: the adapter checkpoints ``task_id`` and polls ``GET {base}{task_path}``
(route option; the page does not name a status endpoint, so this is the operator's to set),
which answers the same envelope. Output URLs are fetched only from the relay's own host unless
the route allows more. The relay is edit-only: the page requires ``images``.

The request options (``Job.options``) are fields of the same page and go as they are named there;
an image the relay returns in another format than the one asked is re-encoded (pixels kept), so
the task's output is what was asked whatever the relay does.
"""

from __future__ import annotations

from typing import Any

from sfumato.providers.base import Job, Outputs, ProviderError
from sfumato.providers.errors import ContentPolicyViolation, UpstreamBadResponse, UpstreamError, for_status
from sfumato.providers.http import Answer
from sfumato.providers.images import data_url, in_format
from sfumato.providers.openai_images import OUTPUT_FORMAT, QUALITY, SIZE
from sfumato.providers.upstream import Upstream

MAX_REFERENCES = 16
DEFAULT_TASK_PATH = "/api/v1/image/generation/{task_id}"
DONE = ("succeeded", "success", "completed", "done", "finished")
FAILED = ("failed", "failure", "error", "canceled", "cancelled", "expired")


def error_for(answer: Answer, body: dict[str, Any] | None) -> ProviderError:
    body = body or {}
    message = str(body.get("message") or f"The relay answered HTTP {answer.status}.")
    if any(word in message.lower() for word in ("moderation", "safety", "content policy")):
        return ContentPolicyViolation(f"The relay refused the request: {message}")
    code = body.get("code")
    status = answer.status if answer.status >= 400 else (code if isinstance(code, int) and 400 <= code < 600 else 502)
    return for_status(status, f"Relay: {message[:500]}", answer.retry_after)


class RelayImageEditProvider:
    name = "relay"
    supports_cancel = False

    def __init__(self, upstream: Upstream):
        self.up = upstream

    def supports(self, job: Job) -> bool:
        return 1 <= len(job.references) <= MAX_REFERENCES

    @property
    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.up.secret}"}

    async def _body(self, job: Job) -> dict[str, Any]:
        images = [{"image_url": data_url(await ref.load(), ref.mime_type)} for ref in job.references]
        options = job.options.image_options()  # the relay's answer is one JSON body: no previews
        return {"model": self.up.route.upstream_model, "prompt": job.prompt, "images": images, "n": 1,
                "size": SIZE[job.params.get("aspect_ratio", "1:1")],
                "quality": QUALITY[job.params.get("quality", "medium")], **options,
                "output_format": options.get("output_format", OUTPUT_FORMAT)}

    async def _call(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        answer = await self.up.http.request(method, url, headers=self._auth, time_limit=self.up.timeout, **kwargs)
        try:
            body = answer.json_object()
        except UpstreamBadResponse:
            if answer.status == 200:
                raise
            body = None
        if answer.status != 200 or body is None or body.get("code") != 0:
            raise error_for(answer, body)
        data = body.get("data")
        if not isinstance(data, dict):
            raise UpstreamBadResponse("The relay answered without data.")
        return data

    async def run(self, job: Job) -> Outputs:
        task_id = str((job.resume or {}).get("task_id") or "")
        if task_id:
            data = await self._poll(task_id)
        else:
            data = await self._call("POST", f"{self.up.base_url}/api/v1/image/generation", json=await self._body(job))
            if not data.get("urls"):
                task_id = str(data.get("task_id") or "")
                if not task_id:
                    raise UpstreamBadResponse("The relay answered neither urls nor a task_id.")
                await job.checkpoint({"task_id": task_id})
                data = await self._poll(task_id)
        urls = data.get("urls")
        if not isinstance(urls, list) or not urls:
            raise UpstreamBadResponse("The relay finished without image URLs.")
        fmt = job.options.output_format or OUTPUT_FORMAT
        images = [await in_format(await self.up.download(str(url)), fmt) for url in urls]
        return Outputs(images, provider=self.name, info={"upstream_model": self.up.route.upstream_model,
                                                         "route": self.up.route.key})

    async def _poll(self, task_id: str) -> dict[str, Any]:
        path = self.up.option("task_path", DEFAULT_TASK_PATH).format(task_id=task_id)

        async def check() -> dict[str, Any] | None:
            data = await self._call("GET", f"{self.up.base_url}{path}")
            status = str(data.get("task_status") or "").lower()
            if status in FAILED:
                raise UpstreamError(f"The relay's task ended {status}.")
            return data if data.get("urls") or status in DONE else None

        return await self.up.poll(check)
