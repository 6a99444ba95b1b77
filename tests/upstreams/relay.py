"""Fake relay speaking the image-edit API of shared/seeds/image-edit.zh.txt (spec §8), in its
synchronous form (urls at once) or asynchronous form (task_id, then task_status polls)."""

from __future__ import annotations

import uuid
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.upstreams.server import FakeServer, image_bytes

FIELDS = {"images", "prompt", "model", "background", "input_fidelity", "moderation", "n", "output_compression",
          "output_format", "partial_images", "quality", "size", "stream", "user"}
SIZES = {"auto", "1024x1024", "1536x1024", "1024x1536"}


def envelope(data: dict[str, Any] | None, code: int = 0, message: str = "ok", status: int = 200) -> JSONResponse:
    return JSONResponse({"code": code, "data": data, "message": message, "request_id": uuid.uuid4().hex},
                        status_code=status)


class FakeRelay(FakeServer):
    def __init__(self, key: str = "sk-relay", asynchronous: bool = False, polls_needed: int = 2) -> None:
        self.key, self.asynchronous, self.polls_needed = key, asynchronous, polls_needed
        self.requests: list[dict[str, Any]] = []
        self.polls: dict[str, int] = {}
        self.files: dict[str, bytes] = {}
        self.sizes: dict[str, str] = {}
        super().__init__()

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/api/v1/image/generation", self.generate, methods=["POST"]),
            Route("/api/v1/image/generation/{task_id}", self.task, methods=["GET"]),
            Route("/files/{name}", self.file, methods=["GET"]),
        ])

    def authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.key}"

    async def generate(self, request: Request) -> JSONResponse:
        if not self.authorized(request):
            return envelope(None, 401, self.refuse("invalid token"), 401)
        body: dict[str, Any] = await request.json()
        self.requests.append(body)
        problem = self.check(body)
        if problem:
            return envelope(None, 400, self.refuse(problem), 400)
        task_id = uuid.uuid4().hex
        self.polls[task_id] = 0
        self.sizes[task_id] = body.get("size", "1024x1024")
        if self.asynchronous:
            return envelope({"urls": [], "task_id": task_id, "task_status": "processing"})
        return envelope(self.done(task_id))

    def check(self, body: dict[str, Any]) -> str | None:
        if set(body) - FIELDS:
            return f"unknown field {sorted(set(body) - FIELDS)[0]}"
        if body.get("model") != "gpt-image-1.5" or not 1 <= len(body.get("prompt") or "") <= 32000:
            return "model must be gpt-image-1.5 and prompt 1-32000 characters"
        images = body.get("images")
        if not isinstance(images, list) or not 1 <= len(images) <= 16:
            return "images: 1 to 16 references"
        if any(len(set(i) & {"image_url", "file_id"}) != 1 or set(i) - {"image_url", "file_id"} for i in images):
            return "each image needs exactly one of image_url or file_id"
        if body.get("size", "auto") not in SIZES or not 1 <= body.get("n", 1) <= 10:
            return "bad size or n"
        return None

    def done(self, task_id: str) -> dict[str, Any]:
        size = self.sizes[task_id]
        width, height = (1024, 1024) if size == "auto" else (int(s) for s in size.split("x"))
        name = f"{task_id}.png"
        self.files[name] = image_bytes(width, height)
        return {"urls": [f"{self.url}/files/{name}"], "task_id": task_id, "task_status": "succeeded",
                "usage": {"images": 1, "seconds": 0, "input_tokens": 0, "total_tokens": 0, "output_tokens": 0},
                "expired": "2099-01-01T00:00:00Z"}

    async def task(self, request: Request) -> JSONResponse:
        if not self.authorized(request):
            return envelope(None, 401, "invalid token", 401)
        task_id = request.path_params["task_id"]
        if task_id not in self.polls:
            return envelope(None, 404, "task not found", 404)
        self.polls[task_id] += 1
        if self.polls[task_id] < self.polls_needed:
            return envelope({"urls": [], "task_id": task_id, "task_status": "processing"})
        return envelope(self.done(task_id))

    async def file(self, request: Request) -> Response:
        data = self.files.get(request.path_params["name"])
        return Response(data, media_type="image/png") if data else Response(status_code=404)
