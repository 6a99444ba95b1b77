"""Fake DashScope async image synthesis (shared/upstreams.md §5): create, poll, cancel, OSS files.

``hosts`` records the ``Host`` of each create (a test routing Alibaba's hostnames to loopback
checks the region's host); ``files_url`` is where result URLs point (default: the fake itself)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.upstreams.server import FakeServer, image_bytes

SIZES = {"1328*1328", "1664*928", "928*1664", "1472*1140", "1140*1472", "1472*1104", "1104*1472"}
PARAMETERS = {"size", "n", "prompt_extend", "watermark", "seed"}


@dataclass
class SynthesisTask:
    body: dict[str, Any]
    polls: int = 0
    canceled: bool = False


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"request_id": uuid.uuid4().hex, "code": code, "message": message}, status_code=status)


class FakeDashScope(FakeServer):
    def __init__(self, key: str = "sk-dashscope", polls_needed: int = 2, files_url: str = "") -> None:
        self.key, self.polls_needed, self.files_url = key, polls_needed, files_url
        self.hosts: list[str] = []
        self.never_finish = False
        self.tasks: dict[str, SynthesisTask] = {}
        self.files: dict[str, bytes] = {}
        super().__init__()

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/api/v1/services/aigc/text2image/image-synthesis", self.create, methods=["POST"]),
            Route("/api/v1/tasks/{task_id}", self.status, methods=["GET"]),
            Route("/api/v1/tasks/{task_id}/cancel", self.cancel, methods=["POST"]),
            Route("/files/{name}", self.file, methods=["GET"]),
        ])

    def authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.key}"

    async def create(self, request: Request) -> JSONResponse:
        if not self.authorized(request):
            return error(401, "InvalidApiKey", self.refuse("Invalid API-key provided."))
        if request.headers.get("x-dashscope-async") != "enable":
            return error(403, "AccessDenied", self.refuse("current user api does not support synchronous calls"))
        body: dict[str, Any] = await request.json()
        self.hosts.append(request.headers.get("host", ""))
        problem = self.check(body)
        if problem:
            return error(400, "InvalidParameter", self.refuse(problem))
        task_id = str(uuid.uuid4())
        self.tasks[task_id] = SynthesisTask(body)
        return JSONResponse({"request_id": uuid.uuid4().hex, "output": {"task_id": task_id, "task_status": "PENDING"}})

    def check(self, body: dict[str, Any]) -> str | None:
        if set(body) - {"model", "input", "parameters"} or body.get("model") != "qwen-image":
            return "Model not exist or unknown top-level field."
        if set(body.get("input", {})) - {"prompt", "negative_prompt"} or not body["input"].get("prompt"):
            return "input must hold prompt (and optionally negative_prompt)"
        params = body.get("parameters", {})
        if set(params) - PARAMETERS:
            return f"unknown parameter {sorted(set(params) - PARAMETERS)[0]}"
        if params.get("size", "1328*1328") not in SIZES or params.get("n", 1) != 1:
            return "The size or n is not supported by qwen-image."
        return None

    async def status(self, request: Request) -> JSONResponse:
        if not self.authorized(request):
            return error(401, "InvalidApiKey", "Invalid API-key provided.")
        task_id = request.path_params["task_id"]
        task = self.tasks.get(task_id)
        if task is None:
            return JSONResponse({"request_id": "r", "output": {"task_id": task_id, "task_status": "UNKNOWN"}})
        task.polls += 1
        output: dict[str, Any] = {"task_id": task_id}
        if task.canceled:
            output["task_status"] = "CANCELED"
        elif self.never_finish or task.polls < self.polls_needed:
            output["task_status"] = "PENDING" if task.polls == 1 else "RUNNING"
        elif "forbidden" in task.body["input"]["prompt"]:
            output.update(task_status="FAILED", code="DataInspectionFailed", message="Input data may contain "
                          "inappropriate content.")
        else:
            width, height = (int(s) for s in task.body["parameters"].get("size", "1328*1328").split("*"))
            name = f"{uuid.uuid4().hex}.png"
            self.files[name] = image_bytes(width, height, "png")
            url = f"{self.files_url or self.url}/files/{name}?Expires=1"
            output.update(task_status="SUCCEEDED", results=[{"url": url, "orig_prompt": task.body["input"]["prompt"]}],
                          task_metrics={"TOTAL": 1, "SUCCEEDED": 1, "FAILED": 0})
        return JSONResponse({"request_id": uuid.uuid4().hex, "output": output, "usage": {"image_count": 1}})

    async def cancel(self, request: Request) -> JSONResponse:
        task = self.tasks.get(request.path_params["task_id"])
        if task is None:
            return error(404, "NotFound", "task not found")
        task.canceled = True
        return JSONResponse({"request_id": "r"})

    async def file(self, request: Request) -> Response:
        data = self.files.get(request.path_params["name"])
        return Response(data, media_type="image/png") if data else Response(status_code=404)
