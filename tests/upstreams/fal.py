"""Fake fal.ai queue (shared/upstreams.md §4): submit, status (202 until done, 200 when
COMPLETED), result, cancel, and the CDN serving output files. Model schemas are checked. The edit
app without ``image_size`` answers the input image's size (it has no default)."""

from __future__ import annotations

import base64
import io
import uuid
from dataclasses import dataclass, field
from typing import Any

from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.upstreams.server import FakeServer, image_bytes

PRESETS = {"square_hd": (1024, 1024), "square": (512, 512), "portrait_4_3": (768, 1024),
           "portrait_16_9": (576, 1024), "landscape_4_3": (1024, 768), "landscape_16_9": (1024, 576)}
IMAGEN = {"1:1": (1024, 1024), "3:4": (896, 1280), "4:3": (1280, 896), "9:16": (768, 1408), "16:9": (1408, 768)}
QWEN = {"prompt", "image_size", "num_inference_steps", "seed", "guidance_scale", "num_images", "output_format",
        "negative_prompt", "acceleration", "enable_safety_checker", "loras", "sync_mode", "use_turbo"}
SCHEMAS = {
    "fal-ai/qwen-image": (QWEN, {"prompt"}),
    "fal-ai/qwen-image-edit": (QWEN - {"loras", "use_turbo"} | {"image_url"}, {"prompt", "image_url"}),
    "fal-ai/imagen4/preview": ({"prompt", "aspect_ratio", "num_images", "output_format", "resolution",
                                "safety_tolerance", "seed", "sync_mode"}, {"prompt"}),
}


@dataclass
class QueuedRequest:
    model: str
    body: dict[str, Any]
    polls: int = 0
    canceled: bool = False
    files: list[str] = field(default_factory=list)


def input_size(data_url: str) -> tuple[int, int]:
    _, _, data = data_url.partition("base64,")
    with Image.open(io.BytesIO(base64.b64decode(data))) as source:
        return source.size


def detail(status: int, message: Any) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


class FakeFal(FakeServer):
    def __init__(self, key: str = "fal-test", polls_needed: int = 2) -> None:
        self.key = key
        self.polls_needed = polls_needed
        self.never_finish = False
        self.queue: dict[str, QueuedRequest] = {}
        self.files: dict[str, bytes] = {}
        super().__init__()

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/files/{name}", self.file, methods=["GET"]),
            Route("/{owner}/{app}/requests/{rid}/status", self.status, methods=["GET"]),
            Route("/{owner}/{app}/requests/{rid}/cancel", self.cancel, methods=["PUT"]),
            Route("/{owner}/{app}/requests/{rid}", self.result, methods=["GET"]),
            Route("/{model:path}", self.submit, methods=["POST"]),
        ])

    def authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Key {self.key}"

    async def submit(self, request: Request) -> JSONResponse:
        if not self.authorized(request):
            return detail(401, self.refuse("Invalid or missing authorization"))
        model = request.path_params["model"]
        if model not in SCHEMAS:
            return detail(404, self.refuse(f"Application {model} not found"))
        body: dict[str, Any] = await request.json()
        allowed, required = SCHEMAS[model]
        problems = [{"loc": ["body", k], "msg": "extra fields not permitted", "type": "value_error.extra"}
                    for k in sorted(set(body) - allowed)]
        problems += [{"loc": ["body", k], "msg": "field required", "type": "value_error.missing"}
                     for k in sorted(required - set(body))]
        if "image_size" in body and body["image_size"] not in PRESETS:
            problems.append({"loc": ["body", "image_size"], "msg": "bad preset", "type": "value_error"})
        if problems:
            self.refuse(str(problems))
            return detail(422, problems)
        rid = uuid.uuid4().hex
        self.queue[rid] = QueuedRequest(model, body)
        base = f"{self.url}/{'/'.join(model.split('/')[:2])}/requests/{rid}"  # owner/app only, as fal does
        return JSONResponse({"status": "IN_QUEUE", "request_id": rid, "response_url": base,
                             "status_url": f"{base}/status", "cancel_url": f"{base}/cancel", "queue_position": 0})

    def find(self, request: Request) -> QueuedRequest | None:
        return self.queue.get(request.path_params["rid"]) if self.authorized(request) else None

    async def status(self, request: Request) -> JSONResponse:
        queued = self.find(request)
        if queued is None or queued.canceled:
            return detail(404, "Request not found")
        queued.polls += 1
        rid = request.path_params["rid"]
        if self.never_finish or queued.polls < self.polls_needed:
            state = "IN_QUEUE" if queued.polls == 1 else "IN_PROGRESS"
            return JSONResponse({"status": state, "request_id": rid, "queue_position": 0, "logs": []}, 202)
        return JSONResponse({"status": "COMPLETED", "request_id": rid, "logs": [],
                             "metrics": {"inference_time": 1.2}})

    async def result(self, request: Request) -> JSONResponse:
        queued = self.find(request)
        if queued is None:
            return detail(404, "Request not found")
        if queued.polls < self.polls_needed or self.never_finish:
            return detail(400, "Request is still in progress")
        body, unsafe = queued.body, "nsfw" in queued.body["prompt"]
        if queued.model == "fal-ai/qwen-image-edit" and "image_size" not in body:
            width, height = input_size(body["image_url"])
        elif "image_size" in body or queued.model != "fal-ai/imagen4/preview":
            width, height = PRESETS[body.get("image_size", "landscape_4_3")]
        else:
            width, height = IMAGEN[body.get("aspect_ratio", "1:1")]
        fmt = body.get("output_format", "png")
        name = f"{uuid.uuid4().hex}.{fmt}"
        self.files[name] = image_bytes(width, height, fmt)
        image = {"url": f"{self.url}/files/{name}", "content_type": f"image/{fmt}", "width": width, "height": height}
        return JSONResponse({"images": [image], "seed": 42, "prompt": body["prompt"], "has_nsfw_concepts": [unsafe],
                             "timings": {"inference": 1.0}})

    async def cancel(self, request: Request) -> JSONResponse:
        queued = self.find(request)
        if queued is None:
            return detail(404, {"status": "NOT_FOUND"})
        queued.canceled = True
        return JSONResponse({"status": "CANCELLATION_REQUESTED"}, 202)

    async def file(self, request: Request) -> Response:
        data = self.files.get(request.path_params["name"])
        kind = "image/" + request.path_params["name"].rsplit(".", 1)[-1]
        return Response(data, media_type=kind) if data else Response(status_code=404)
