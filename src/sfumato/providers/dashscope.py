"""Alibaba DashScope (Model Studio) for ``qwen-image``, text-to-image only, shared/upstreams.md §5.

Create ``POST /services/aigc/text2image/image-synthesis`` with ``X-DashScope-Async: enable`` →
poll ``GET /tasks/{task_id}`` until ``SUCCEEDED`` → download ``output.results[].url`` from
Alibaba's OSS. The host is the region's (``SFUMATO_DASHSCOPE_REGION``, or the route's
``base_url``): a key is bound to the region that issued it. DashScope makes its own pixel sizes
(larger than fal's presets) and PNG only: the result keeps DashScope's size and is re-encoded to
JPEG when the client asked for it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sfumato.providers.base import Job, Outputs, ProviderError
from sfumato.providers.errors import (
    ContentPolicyViolation,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamInvalidRequest,
    for_status,
)
from sfumato.providers.http import Answer, best_effort
from sfumato.providers.images import in_format
from sfumato.providers.upstream import Upstream

REGION_BASE_URLS = {
    "singapore": "https://dashscope-intl.aliyuncs.com/api/v1",
    "beijing": "https://dashscope.aliyuncs.com/api/v1",
}
"""``SFUMATO_DASHSCOPE_REGION`` → API base. Alibaba: "The Beijing and Singapore regions have separate
API keys and request endpoints"; the dashscope SDK defaults to Beijing (``common/env.py``)."""
DEFAULT_BASE_URL = REGION_BASE_URLS["singapore"]
DOWNLOAD_HOSTS = ("*.aliyuncs.com",)
SIZE = {
    "square": "1328*1328", "square_hd": "1328*1328",
    "portrait_4_3": "1104*1472", "portrait_16_9": "928*1664",
    "landscape_4_3": "1472*1104", "landscape_16_9": "1664*928",
}
"""sfumato ``image_size`` → DashScope ``size`` (the nearest ratio qwen-image makes; 4:3 and 3:4 are
the newer 1472*1104 pair, UNVERIFIED against the older 1472*1140)."""
PENDING = ("PENDING", "RUNNING", "SUSPENDED")
POLICY_CODES = ("DataInspectionFailed", "IPInfringementSuspect")


def error_for(answer: Answer) -> ProviderError:
    """DashScope's ``{"request_id", "code", "message"}``."""
    try:
        body = answer.json_object()
    except UpstreamBadResponse:
        body = {}
    code, message = str(body.get("code") or ""), str(body.get("message") or f"HTTP {answer.status}")
    if code in POLICY_CODES:
        return ContentPolicyViolation(f"DashScope refused the request: {message}")
    return for_status(answer.status, f"DashScope: {code} {message}".strip(), answer.retry_after)


def failed_task(output: dict[str, Any]) -> ProviderError:
    code, message = str(output.get("code") or ""), str(output.get("message") or "the task failed")
    if code in POLICY_CODES:
        return ContentPolicyViolation(f"DashScope refused the request: {message}")
    if code.startswith("InvalidParameter"):
        return UpstreamInvalidRequest(f"DashScope: {message}")
    return UpstreamError(f"DashScope's task failed: {code} {message}".strip())


class _Gone(Exception):
    """A resumed task is unknown (expired after 24 h) or was canceled by an earlier attempt."""


class DashScopeProvider:
    name = "dashscope"
    supports_cancel = True
    """Best effort: DashScope cancels only tasks still ``PENDING``."""

    def __init__(self, upstream: Upstream):
        self.up = upstream

    def supports(self, job: Job) -> bool:
        return job.model.id == "qwen-image" and not job.references

    @property
    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.up.secret}"}

    async def run(self, job: Job) -> Outputs:
        task_id = str((job.resume or {}).get("task_id") or "")
        output = None
        if task_id:
            try:
                output = await self._wait(task_id)
            except _Gone:
                output = None
        if output is None:
            task_id = await self._submit(job)
            try:
                output = await self._wait(task_id)
            except _Gone:
                raise UpstreamBadResponse("DashScope lost track of the task it just accepted.") from None
        results = output.get("results")
        if not isinstance(results, list) or not results or not all(isinstance(r, dict) for r in results):
            raise UpstreamBadResponse("DashScope's task succeeded without results.")
        fmt = job.params.get("output_format", "png")
        images = [await in_format(await self.up.download(str(r.get("url"))), fmt) for r in results]
        return Outputs(images, provider=self.name, info={"upstream_model": self.up.route.upstream_model,
                                                         "route": self.up.route.key, "upstream_task_id": task_id})

    async def _submit(self, job: Job) -> str:
        body = {"model": self.up.route.upstream_model, "input": {"prompt": job.prompt},
                "parameters": {"size": SIZE[job.params.get("image_size", "square_hd")], "n": 1,
                               "prompt_extend": bool(self.up.route.options.get("prompt_extend", True)),
                               "watermark": False}}
        headers = {**self._auth, "X-DashScope-Async": "enable"}
        answer = await self.up.http.request("POST", f"{self.up.base_url}/services/aigc/text2image/image-synthesis",
                                            json=body, headers=headers, time_limit=self.up.timeout)
        if answer.status != 200:
            raise error_for(answer)
        output = answer.json_object().get("output")
        task_id = output.get("task_id") if isinstance(output, dict) else None
        if not isinstance(task_id, str) or not task_id:
            raise UpstreamBadResponse("DashScope accepted the task without a task_id.")
        await job.checkpoint({"task_id": task_id, "request_id": answer.json_object().get("request_id", "")})
        return task_id

    async def _wait(self, task_id: str) -> dict[str, Any]:
        try:
            return await self.up.poll(lambda: self._status(task_id))
        except asyncio.CancelledError:
            await best_effort(self.up.http.request("POST", f"{self.up.base_url}/tasks/{task_id}/cancel",
                                                   headers=self._auth, time_limit=5.0))
            raise

    async def _status(self, task_id: str) -> dict[str, Any] | None:
        answer = await self.up.http.request("GET", f"{self.up.base_url}/tasks/{task_id}", headers=self._auth,
                                            time_limit=self.up.timeout)
        if answer.status == 404:
            raise _Gone
        if answer.status != 200:
            raise error_for(answer)
        output = answer.json_object().get("output")
        if not isinstance(output, dict):
            raise UpstreamBadResponse("DashScope answered a task status without output.")
        status = output.get("task_status")
        if status == "SUCCEEDED":
            return output
        if status in PENDING:
            return None
        if status in ("CANCELED", "UNKNOWN"):
            raise _Gone
        if status == "FAILED":
            raise failed_task(output)
        raise UpstreamBadResponse(f"DashScope reported an unknown task status {str(status)[:40]!r}.")
