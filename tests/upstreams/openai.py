"""Fake OpenAI Images API (shared/upstreams.md §1): generations (JSON) and edits (multipart, or
the JSON edit body of §1.3). It records what it received and answers in the format asked: the
``output_format``, an alpha channel for ``background: transparent``, and ``output_compression``
as the encoder's quality (a textured picture then, so that compression changes the size).

With ``stream`` (``true`` in JSON, ``"true"`` in a form) it answers OpenAI's image event stream
(§1.5): ``partial_images`` ``….partial_image`` events, then ``….completed`` with ``usage``.
``stream_fault`` breaks it the ways a stream breaks: ``"cut"`` ends the body after the partial
images without a completed event, ``"error"`` sends an ``error`` event after the first one,
``"refused"`` an ``error`` event with ``moderation_blocked``, ``"drop"`` breaks the connection
after the partial images."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from PIL import Image, ImageDraw
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
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
JSON_EDIT_FIELDS = {"images", "mask", "prompt", "model", "n", "quality", "input_fidelity", "size", "output_format",
                    "output_compression", "moderation", "background", "stream", "partial_images", "user"}
CHOICES = {"background": {"transparent", "opaque", "auto"}, "output_format": {"png", "jpeg", "webp"},
           "moderation": {"low", "auto"}, "input_fidelity": {"high", "low"}}


def picture(width: int, height: int, fmt: str, transparent: bool, compression: int | None) -> bytes:
    """A textured image (so that the encoder's quality shows in the size); transparent: a disc on
    a clear ground."""
    texture = Image.effect_noise((max(1, width // 16), max(1, height // 16)), 64).resize((width, height))
    image = Image.merge("RGB", (texture, Image.linear_gradient("L").resize((width, height)), texture))
    if transparent:
        alpha = Image.new("L", (width, height), 0)
        ImageDraw.Draw(alpha).ellipse((width // 4, height // 4, width * 3 // 4, height * 3 // 4), fill=255)
        image.putalpha(alpha)
    buffer = io.BytesIO()
    extra = {} if fmt == "png" or compression is None else {"quality": compression}
    image.save(buffer, {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}[fmt], **extra)
    return buffer.getvalue()


def error(status: int, message: str, code: str | None = None, type_: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type_, "param": None, "code": code}},
                        status_code=status, headers={"x-request-id": "req_fake"})


class FakeOpenAI(FakeServer):
    def __init__(self, key: str = "sk-test-openai") -> None:
        self.key = key
        self.requests: list[dict[str, Any]] = []
        self.stream_fault: str | None = None
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
        if body.get("stream", False) not in (True, False, "true", "false"):
            return "Invalid 'stream'"
        if str(body.get("partial_images", 0)) not in ("0", "1", "2", "3"):
            return "Invalid 'partial_images': 0 to 3."
        return self.check_options(body)

    def check_options(self, body: dict[str, Any]) -> str | None:
        for key, allowed in CHOICES.items():
            if key in body and body[key] not in allowed:
                return f"Invalid value for '{key}': {body[key]}"
        fmt = body.get("output_format", "png")
        if body.get("background") == "transparent" and fmt not in ("png", "webp"):
            return "Transparent background requires output_format png or webp."
        if "output_compression" in body:
            compression = str(body["output_compression"])
            if not compression.isdigit() or not 0 <= int(compression) <= 100:
                return "Invalid 'output_compression': 0 to 100."
            if fmt == "png" and int(compression) < 100:
                return "output_compression is only for jpeg and webp output."
        if "user" in body and not isinstance(body["user"], str):
            return "Invalid 'user'"
        return None

    def answer(self, body: dict[str, Any]) -> Response:
        if "forbidden" in body["prompt"]:
            return error(400, "Your request was rejected by the safety system.", "moderation_blocked",
                         "image_generation_user_error")
        size = body.get("size", "1024x1024")
        size = "1024x1024" if size == "auto" else size
        width, height = (int(side) for side in size.split("x"))
        fmt = body.get("output_format", "png")
        transparent = body.get("background") == "transparent"
        compression = int(body["output_compression"]) if "output_compression" in body else None
        made = (picture(width, height, fmt, transparent, compression) if transparent or compression is not None
                else image_bytes(width, height, fmt))
        data = [{"b64_json": base64.b64encode(made).decode()} for _ in range(int(body.get("n", 1)))]
        usage = {"total_tokens": 100, "input_tokens": 50, "output_tokens": 50,
                 "input_tokens_details": {"text_tokens": 10, "image_tokens": 40}}
        used = body.get("quality", "auto")
        used = "medium" if used == "auto" else used  # the answer names the quality used: low|medium|high
        if body.get("stream") in (True, "true"):
            echo = {"size": size, "quality": used, "background": "transparent" if transparent else "opaque",
                    "output_format": fmt}
            kind = "image_edit" if "images" in body or "image[]" in body.get("_parts", ()) else "image_generation"
            return StreamingResponse(self.events(kind, body, made, echo, usage), media_type="text/event-stream",
                                     headers={"x-request-id": "req_fake"})
        return JSONResponse({"created": int(time.time()), "data": data,
                             "background": "transparent" if transparent else "opaque",
                             "output_format": fmt, "size": size, "quality": used,
                             "usage": usage}, headers={"x-request-id": "req_fake"})

    async def events(self, kind: str, body: dict[str, Any], made: bytes, echo: dict[str, Any],
                     usage: dict[str, Any]) -> AsyncIterator[bytes]:
        def event(name: str, data: dict[str, Any]) -> bytes:
            return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()

        with Image.open(io.BytesIO(made)) as final:
            width, height = final.size
        for index in range(int(body.get("partial_images", 0))):
            coarse = image_bytes(width, height, echo["output_format"])
            yield event(f"{kind}.partial_image", {"type": f"{kind}.partial_image", "b64_json": base64.b64encode(
                coarse).decode(), "created_at": int(time.time()), "partial_image_index": index, **echo})
            if self.stream_fault in ("error", "refused"):
                code = "moderation_blocked" if self.stream_fault == "refused" else "server_error"
                yield event("error", {"type": "error", "error": {
                    "message": "The safety system refused the image." if code == "moderation_blocked"
                    else "The server had an error while processing your request.",
                    "type": "image_generation_user_error" if code == "moderation_blocked" else "server_error",
                    "param": None, "code": code}})
                return
        if self.stream_fault == "cut":
            return
        if self.stream_fault == "drop":  # the connection breaks mid-body (uvicorn aborts the chunked answer)
            raise ConnectionResetError("the fake drops the stream")
        yield event(f"{kind}.completed", {"type": f"{kind}.completed", "b64_json": base64.b64encode(made).decode(),
                                          "created_at": int(time.time()), **echo, "usage": usage})

    def authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.key}"

    async def generations(self, request: Request) -> Response:
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

    async def edits(self, request: Request) -> Response:
        if not self.authorized(request):
            return error(401, self.refuse("Incorrect API key provided"), "invalid_api_key")
        if request.headers.get("content-type", "").split(";")[0] == "application/json":
            return await self.json_edit(request)
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            return error(400, self.refuse("edits take multipart/form-data or application/json"))
        form = await request.form()
        names = [name for name, _ in form.multi_items()]
        files = [value for name, value in form.multi_items() if isinstance(value, UploadFile)]
        body = {name: value for name, value in form.multi_items() if isinstance(value, str)}
        self.requests.append({"path": "edits", "parts": names, "files": [(f.filename, f.content_type) for f in files],
                              **body})
        problem = self.check_edit(names, files, body)
        if problem:
            return error(400, self.refuse(problem))
        return self.answer({**body, "_parts": names})

    async def json_edit(self, request: Request) -> Response:
        """The JSON edit body (§1.3, GPT image models only): ``images`` as ``{image_url}`` (an https
        or ``data:`` URL) or ``{file_id}``, exactly one each."""
        body = await request.json()
        self.requests.append({"path": "edits", "json": True, **body})
        unknown = set(body) - JSON_EDIT_FIELDS
        images = body.get("images")
        problem = f"Unknown parameter: '{sorted(unknown)[0]}'." if unknown else None
        if problem is None and (not isinstance(images, list) or not 1 <= len(images) <= 16 or any(
                not isinstance(i, dict) or len(i) != 1 or not set(i) <= {"image_url", "file_id"} for i in images)):
            problem = "images: 1 to 16 of {image_url} or {file_id}."
        if problem is None and any(not str(i.get("image_url", "data:image/")).startswith(("data:image/", "https://"))
                                   for i in images):
            problem = "image_url must be an https or data: URL."
        problem = problem or self.check_common(body)
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
