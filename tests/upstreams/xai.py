"""Fake xAI image API (shared/upstreams.md §2): JSON generations and edits, flat error shape.

``b64_json`` is plain base64 with a ``mime_type`` beside it, as xAI's API reference documents
(``data_prefix=True`` answers the ``data:…;base64,`` form older guides showed). An edit without
``aspect_ratio`` follows the input image's shape, at about a megapixel.
"""

from __future__ import annotations

import base64
import io
import math
import uuid
from typing import Any

from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.upstreams.server import FakeServer, image_bytes

MODELS = {"grok-imagine-image", "grok-imagine-image-quality", "grok-imagine-image-2.0"}
FIELDS = {"model", "prompt", "n", "response_format", "aspect_ratio", "resolution", "quality", "user"}
RATIOS = {"1:1", "3:4", "4:3", "9:16", "16:9", "2:3", "3:2", "9:19.5", "19.5:9", "9:20", "20:9", "1:2", "2:1", "auto"}
PIXELS = {"1:1": (1024, 1024), "2:3": (832, 1248), "3:2": (1248, 832), "16:9": (1360, 768), "9:16": (768, 1360)}
"""What this fake makes per ratio (xAI publishes no exact pixels; the catalog's choice)."""


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"code": "Client specified an invalid argument", "error": message}, status_code=status)


class FakeXai(FakeServer):
    def __init__(self, key: str = "xai-test", *, data_prefix: bool = False) -> None:
        self.key, self.data_prefix = key, data_prefix
        self.requests: list[dict[str, Any]] = []
        self.files: dict[str, bytes] = {}
        super().__init__()

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/v1/images/generations", self.generations, methods=["POST"]),
            Route("/v1/images/edits", self.edits, methods=["POST"]),
            Route("/files/{name}", self.file, methods=["GET"]),
        ])

    async def parse(self, request: Request, extra: set[str]) -> dict[str, Any] | JSONResponse:
        if request.headers.get("authorization") != f"Bearer {self.key}":
            return error(401, self.refuse("Incorrect API key provided: xa***"))
        if request.headers.get("content-type", "").split(";")[0] != "application/json":
            return error(415, self.refuse("the xAI API requires application/json"))
        body: dict[str, Any] = await request.json()
        self.requests.append(body)
        if "size" in body:
            return error(400, self.refuse("Argument not supported: size"))
        unknown = set(body) - FIELDS - extra
        if unknown:
            return error(400, self.refuse(f"Unknown argument: {sorted(unknown)[0]}"))
        if body.get("model") not in MODELS or not body.get("prompt"):
            return error(400, self.refuse(f"Invalid model or prompt: {body.get('model')}"))
        if body.get("aspect_ratio", "1:1") not in RATIOS or not 1 <= body.get("n", 1) <= 10:
            return error(400, self.refuse("Invalid aspect_ratio or n"))
        return body

    async def generations(self, request: Request) -> Response:
        body = await self.parse(request, set())
        return body if isinstance(body, Response) else self.answer(request, body)

    async def edits(self, request: Request) -> Response:
        body = await self.parse(request, {"image", "images"})
        if isinstance(body, Response):
            return body
        if ("image" in body) == ("images" in body):
            return error(400, self.refuse("Provide exactly one of image or images"))
        sources = [body["image"]] if "image" in body else body["images"]
        if len(sources) > 3 or any(set(s) != {"url", "type"} or s["type"] != "image_url" for s in sources):
            return error(400, self.refuse("Invalid image source"))
        if not all(s["url"].startswith(("data:image/", "https://")) for s in sources):
            return error(400, self.refuse("Image url must be https or a data URL"))
        return self.answer(request, body)

    def answer(self, request: Request, body: dict[str, Any]) -> JSONResponse:
        if "forbidden" in body["prompt"]:
            return JSONResponse({"data": [{"url": "", "respect_moderation": False}], "usage": {}})
        width, height = self.size(body)
        data = image_bytes(width, height, "jpeg")
        if body.get("response_format", "url") == "b64_json":
            prefix = "data:image/jpeg;base64," if self.data_prefix else ""
            item: dict[str, Any] = {"b64_json": prefix + base64.b64encode(data).decode(), "mime_type": "image/jpeg"}
        else:
            name = f"{uuid.uuid4().hex}.jpg"
            self.files[name] = data
            item = {"url": f"{self.url}/files/{name}"}
        item.update({"revised_prompt": body["prompt"], "respect_moderation": True})
        return JSONResponse({"data": [item], "usage": {"cost_in_usd_ticks": 200000000}})

    @staticmethod
    def size(body: dict[str, Any]) -> tuple[int, int]:
        if "aspect_ratio" in body or "image" not in body:
            return PIXELS.get(body.get("aspect_ratio", "1:1"), (1024, 1024))
        _, _, data = body["image"]["url"].partition("base64,")
        with Image.open(io.BytesIO(base64.b64decode(data))) as source:
            scale = math.sqrt(1024 * 1024 / (source.width * source.height))
            return round(source.width * scale / 16) * 16, round(source.height * scale / 16) * 16

    async def file(self, request: Request) -> Response:
        data = self.files.get(request.path_params["name"])
        return Response(data, media_type="image/jpeg") if data else Response(status_code=404)
