"""Fake OpenAI Images API (shared/upstreams.md §1): generations (JSON) and edits (multipart)."""

from __future__ import annotations

import base64
import time
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.upstreams.server import FakeServer, image_bytes

MODELS = {"gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5", "gpt-image-2", "chatgpt-image-latest",
          "dall-e-2", "dall-e-3"}
GENERATION_FIELDS = {"prompt", "model", "n", "size", "quality", "background", "output_format", "output_compression",
                     "moderation", "stream", "partial_images", "user", "response_format", "style"}
EDIT_FIELDS = {"image", "image[]", "mask", "prompt", "model", "n", "size", "quality", "background", "output_format",
               "output_compression", "user", "stream", "partial_images", "response_format", "input_fidelity"}
SIZES = {"1024x1024", "1536x1024", "1024x1536", "auto"}
QUALITIES = {"low", "medium", "high", "auto"}
IMAGE_TYPES = {"image/png", "image/jpeg", "image/webp"}


def error(status: int, message: str, code: str | None = None, type_: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "param": None, "code": code}},
                        status_code=status, headers={"x-request-id": "req_fake"})


class FakeOpenAI(FakeServer):
    def __init__(self, key: str = "sk-test-openai") -> None:
        self.key = key
        self.requests: list[dict[str, Any]] = []
        super().__init__()

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/v1/images/generations", self.generations, methods=["POST"]),
            Route("/v1/images/edits", self.edits, methods=["POST"]),
        ])

    def check_common(self, body: dict[str, Any]) -> str | None:
        if "model" not in body:
            return "model is required by sfumato's contract (omitted, the API falls back to dall-e-2)"
        if body["model"] not in MODELS:
            return f"Invalid value for 'model': {body['model']}"
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not 1 <= len(prompt) <= 32000:
            return "Invalid 'prompt'"
        if body.get("size", "auto") not in SIZES:
            return f"Invalid value for 'size': {body['size']}"
        if body.get("quality", "auto") not in QUALITIES:
            return f"Invalid value for 'quality': {body['quality']}"
        if not 1 <= int(body.get("n", 1)) <= 10:
            return "Invalid 'n'"
        return None

    def answer(self, body: dict[str, Any]) -> JSONResponse:
        if "forbidden" in body["prompt"]:
            return error(400, "Your request was rejected by the safety system.", "moderation_blocked",
                         "image_generation_user_error")
        size = body.get("size", "1024x1024")
        size = "1024x1024" if size == "auto" else size
        width, height = (int(side) for side in size.split("x"))
        fmt = body.get("output_format", "png")
        data = [{"b64_json": base64.b64encode(image_bytes(width, height, fmt)).decode()}
                for _ in range(int(body.get("n", 1)))]
        usage = {"total_tokens": 100, "input_tokens": 50, "output_tokens": 50,
                 "input_tokens_details": {"text_tokens": 10, "image_tokens": 40}}
        return JSONResponse({"created": int(time.time()), "data": data, "background": "opaque",
                             "output_format": fmt, "size": size, "quality": body.get("quality", "medium"),
                             "usage": usage}, headers={"x-request-id": "req_fake"})

    def authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.key}"

    async def generations(self, request: Request) -> JSONResponse:
        if not self.authorized(request):
            return error(401, self.refuse("Incorrect API key provided"), "invalid_api_key")
        if request.headers.get("content-type", "").split(";")[0] != "application/json":
            return error(400, self.refuse("generations take application/json"))
        body = await request.json()
        self.requests.append({"path": "generations", **body})
        unknown = set(body) - GENERATION_FIELDS
        problem = f"Unknown parameter: '{sorted(unknown)[0]}'." if unknown else self.check_common(body)
        if problem:
            return error(400, self.refuse(problem))
        return self.answer(body)

    async def edits(self, request: Request) -> JSONResponse:
        if not self.authorized(request):
            return error(401, self.refuse("Incorrect API key provided"), "invalid_api_key")
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            return error(400, self.refuse("edits take multipart/form-data here"))
        form = await request.form()
        names = [name for name, _ in form.multi_items()]
        files = [value for name, value in form.multi_items() if isinstance(value, UploadFile)]
        body = {name: value for name, value in form.multi_items() if isinstance(value, str)}
        self.requests.append({"path": "edits", "parts": names, "files": [(f.filename, f.content_type) for f in files],
                              **body})
        problem = self.check_edit(names, files, body)
        if problem:
            return error(400, self.refuse(problem))
        return self.answer(body)

    def check_edit(self, names: list[str], files: list[UploadFile], body: dict[str, Any]) -> str | None:
        unknown = set(names) - EDIT_FIELDS
        if unknown:
            return f"Unknown parameter: '{sorted(unknown)[0]}'."
        images = [name for name in names if name in ("image", "image[]")]
        if not images or ("image" in images and len(images) > 1) or len(images) > 16:
            return "Provide one 'image' or 1 to 16 'image[]' parts."
        if any(f.content_type not in IMAGE_TYPES for f in files):
            return "Invalid image file type: png, webp or jpg only."
        if len(files) != len(images):
            return "Image parts must be files."
        return self.check_common(body)
