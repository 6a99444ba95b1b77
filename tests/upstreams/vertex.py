"""Fake Vertex AI / Gemini API Imagen ``:predict`` (shared/upstreams.md §3).

Vertex paths are served under ``v1`` (the REST docs) and ``v1beta1`` (google-genai's default).
A request whose ``Host`` names a Vertex AI host (a test routing Google's hostnames to loopback)
must name a location that host serves, as Google checks: ``global`` and express mode on
``aiplatform.googleapis.com``, ``us``/``eu`` on ``aiplatform.{loc}.rep.googleapis.com``, a region
on ``{loc}-aiplatform.googleapis.com``.
"""

from __future__ import annotations

import base64
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.upstreams.server import FakeServer, image_bytes

MODELS = {"imagen-4.0-generate-001", "imagen-4.0-ultra-generate-001", "imagen-4.0-fast-generate-001"}
PIXELS = {"1:1": (1024, 1024), "3:4": (896, 1280), "4:3": (1280, 896), "9:16": (768, 1408), "16:9": (1408, 768)}
PARAMETERS = {"sampleCount", "aspectRatio", "personGeneration", "sampleImageSize", "outputOptions", "addWatermark",
              "seed", "enhancePrompt", "negativePrompt", "safetySetting", "includeRaiReason",
              "includeSafetyAttributes", "language", "storageUri", "guidanceScale"}
VERTEX_ONLY = {"negativePrompt", "seed", "addWatermark", "enhancePrompt", "storageUri"}
VERSIONS = ("v1", "v1beta1")
GLOBAL_HOST = "aiplatform.googleapis.com"


def host_location(host: str) -> str | None:
    """The location a Vertex AI host serves, or ``None`` for a host that is not Google's."""
    name = host.split(":")[0]
    if name == GLOBAL_HOST:
        return "global"
    if name.startswith("aiplatform.") and name.endswith(".rep.googleapis.com"):
        return name.removeprefix("aiplatform.").removesuffix(".rep.googleapis.com")
    if name.endswith("-" + GLOBAL_HOST):
        return name.removesuffix("-" + GLOBAL_HOST)
    return None


def error(status: int, message: str, state: str = "INVALID_ARGUMENT") -> JSONResponse:
    return JSONResponse({"error": {"code": status, "message": message, "status": state}}, status_code=status)


class FakeVertex(FakeServer):
    def __init__(self, api_key: str = "vertex-key", token: str = "ya29.token", project: str = "proj") -> None:
        self.api_key, self.token, self.project = api_key, token, project
        self.models = set(MODELS)
        self.requests: list[dict[str, Any]] = []
        super().__init__()

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self.predict, methods=["POST"])])

    def target(self, request: Request) -> tuple[str, str] | JSONResponse:
        """(model, api) from the path and auth, or the error Google would answer."""
        path, _, verb = request.path_params["path"].partition(":")
        parts = path.split("/")
        headers = request.headers
        if verb != "predict":
            return error(404, self.refuse(f"unknown method {verb}"), "NOT_FOUND")
        if parts[:2] == ["v1beta", "models"] and headers.get("x-goog-api-key") == self.api_key:
            return parts[2], "gemini"
        served = host_location(headers.get("host", ""))
        if (parts[0] in VERSIONS and parts[1:4] == ["publishers", "google", "models"]
                and headers.get("x-goog-api-key") == self.api_key):
            if served not in (None, "global"):
                return error(400, self.refuse(f"Express mode is served on {GLOBAL_HOST}, not {served}"))
            return parts[4], "vertex"
        if (parts[0] in VERSIONS and parts[1] == "projects" and parts[2] == self.project and parts[3] == "locations"
                and parts[5:8] == ["publishers", "google", "models"]
                and headers.get("authorization") == f"Bearer {self.token}"):
            if served is not None and served != parts[4]:
                return error(400, self.refuse(f"The provided location ID doesn't match the endpoint. "
                                              f"The valid location ID is `{served}`."))
            return parts[8], "vertex"
        return error(401, self.refuse(f"Request had invalid authentication credentials ({path})"), "UNAUTHENTICATED")

    async def predict(self, request: Request) -> JSONResponse:
        target = self.target(request)
        if isinstance(target, JSONResponse):
            return target
        model, api = target
        body: dict[str, Any] = await request.json()
        self.requests.append({"model": model, "api": api, "host": request.headers.get("host", ""),
                              "path": request.url.path, **body})
        problem = self.check(model, api, body)
        if problem:
            return error(400, self.refuse(problem))
        params = body["parameters"]
        if "forbidden" in body["instances"][0]["prompt"]:
            return JSONResponse({"predictions": [{"raiFilteredReason": "Your current safety filter threshold "
                                                  "prohibited one or more images."}]})
        width, height = PIXELS[params.get("aspectRatio", "1:1")]
        data = base64.b64encode(image_bytes(width, height)).decode()
        return JSONResponse({"predictions": [{"bytesBase64Encoded": data, "mimeType": "image/png",
                                              "prompt": "enhanced: " + body["instances"][0]["prompt"]}]})

    def check(self, model: str, api: str, body: dict[str, Any]) -> str | None:
        if model not in self.models:
            return f"Publisher model {model} not found"
        instances, params = body.get("instances"), body.get("parameters", {})
        if not isinstance(instances, list) or len(instances) != 1 or not instances[0].get("prompt"):
            return "instances must hold one prompt"
        unknown = set(params) - PARAMETERS
        if unknown:
            return f"Invalid JSON payload received. Unknown name {sorted(unknown)[0]!r}"
        if api == "gemini" and set(params) & VERTEX_ONLY:
            return f"{sorted(set(params) & VERTEX_ONLY)[0]} is not supported in Gemini API"
        if not 1 <= params.get("sampleCount", 4) <= 4 or params.get("aspectRatio", "1:1") not in PIXELS:
            return "Invalid sampleCount or aspectRatio"
        if "seed" in params and params.get("addWatermark", True):
            return "Seed is not supported when watermark is enabled"
        return None
