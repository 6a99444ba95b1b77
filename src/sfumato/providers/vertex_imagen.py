"""Google Imagen 4 for ``google-imagen4`` through Vertex AI ``:predict``, shared/upstreams.md §3.

Three ways in (route option ``auth``):
- ``bearer``: an OAuth access token and a project (``project`` / ``project_env``, ``location``).
  The host follows the location as google-genai (``_api_client.py``) and google-cloud-aiplatform
  (``initializer.get_client_options``) derive it: ``global`` → ``aiplatform.googleapis.com``,
  ``us`` / ``eu`` → ``aiplatform.{loc}.rep.googleapis.com``, a region →
  ``{loc}-aiplatform.googleapis.com`` (Google refuses a location its host does not serve);
- ``api_key`` (the default when ``auth`` is unset): Vertex express mode, ``x-goog-api-key``, no
  project, the global host. Google's express-mode REST reference lists only the
  ``generateContent`` family, so ``:predict`` there is unconfirmed (docs/providers.md);
- ``gemini``: the Gemini API (being retired): ``seed`` and ``addWatermark`` are not accepted there.

A seeded request also sends ``addWatermark: false`` (a seed is ignored while watermarking is
on). ``negativePrompt`` is documented only for the Imagen 3 models in ``NEGATIVE_PROMPT_MODELS``:
for any other model it is not sent, and the task result's ``info.notes`` says so.
Filtered images are simply absent: none left is a content-policy failure.
"""

from __future__ import annotations

from typing import Any

from sfumato.providers.base import Job, OutputImage, Outputs, ProviderError
from sfumato.providers.errors import ContentPolicyViolation, UpstreamBadResponse, for_status
from sfumato.providers.http import Answer
from sfumato.providers.images import b64_bytes, decode_image
from sfumato.providers.upstream import Upstream

DEFAULT_BASE_URL = "https://aiplatform.googleapis.com"
"""The global host: express mode, and ``location: global``."""
DEFAULT_LOCATION = "us-central1"
MULTI_REGIONAL_LOCATIONS = ("us", "eu")
NEGATIVE_PROMPT_MODELS = ("imagen-3.0-generate-001", "imagen-3.0-fast-generate-001", "imagen-3.0-capability-001")
"""The models Google lists as taking ``negativePrompt`` (Vertex AI docs, "Omit content using a
negative prompt"); no Imagen 4 model is among them."""
GEMINI_BASE_URL = "https://generativelanguage.googleapis.com"
ASPECT_RATIO = {k: k for k in ("1:1", "16:9", "9:16", "3:4", "4:3")}
"""sfumato ``aspect_ratio`` → Imagen ``aspectRatio`` (1K: 1024², 1408x768, 768x1408, 896x1280, 1280x896)."""
POLICY_WORDS = ("violate", "blocked", "responsible ai", "safety")


def regional_base_url(location: str) -> str:
    """The Vertex AI host that serves ``location``, as Google's SDKs derive it."""
    if location == "global":
        return DEFAULT_BASE_URL
    if location in MULTI_REGIONAL_LOCATIONS:
        return f"https://aiplatform.{location}.rep.googleapis.com"
    return f"https://{location}-aiplatform.googleapis.com"


def error_for(answer: Answer) -> ProviderError:
    """Google's ``{"error": {code, message, status}}``; a policy block is a 400 whose message says so."""
    try:
        error = answer.json_object().get("error")
    except UpstreamBadResponse:
        error = None
    error = error if isinstance(error, dict) else {}
    message = str(error.get("message") or f"Google answered HTTP {answer.status}.")
    if answer.status == 400 and any(word in message.lower() for word in POLICY_WORDS):
        return ContentPolicyViolation(f"Imagen refused the request: {message}")
    return for_status(answer.status, f"Imagen: {error.get('status') or ''} {message}".strip(), answer.retry_after)


class VertexImagenProvider:
    name = "vertex"
    supports_cancel = False

    def __init__(self, upstream: Upstream):
        self.up = upstream

    def supports(self, job: Job) -> bool:
        return job.model.id == "google-imagen4" and not job.references

    def _target(self) -> tuple[str, dict[str, str]]:
        model, auth = self.up.route.upstream_model, self.up.option("auth", "api_key")
        if auth == "gemini":
            return f"{self.up.base_url}/v1beta/models/{model}:predict", {"x-goog-api-key": self.up.secret}
        if auth == "bearer":
            project = self.up.option("project") or self.up.env.get(self.up.option("project_env"), "")
            location = self.up.option("location", DEFAULT_LOCATION)
            path = f"/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:predict"
            return self.up.base_url + path, {"Authorization": f"Bearer {self.up.secret}"}
        return f"{self.up.base_url}/v1/publishers/google/models/{model}:predict", {"x-goog-api-key": self.up.secret}

    def body(self, job: Job, notes: list[str] | None = None) -> dict[str, Any]:
        """The ``:predict`` body; what the route's model does not take is left out and said in ``notes``."""
        notes = [] if notes is None else notes
        parameters: dict[str, Any] = {
            "sampleCount": 1,
            "aspectRatio": ASPECT_RATIO[job.params.get("aspect_ratio", "1:1")],
            "outputOptions": {"mimeType": "image/png"},
            "includeRaiReason": True,
        }
        gemini, model = self.up.option("auth", "api_key") == "gemini", self.up.route.upstream_model
        if job.params.get("negative_prompt"):
            if gemini:
                notes.append("negative_prompt was not sent: the Gemini API takes no negativePrompt.")
            elif model not in NEGATIVE_PROMPT_MODELS:
                notes.append(f"negative_prompt was not sent: Google documents negativePrompt only for "
                             f"{', '.join(NEGATIVE_PROMPT_MODELS)}, not for {model}.")
            else:
                parameters["negativePrompt"] = job.params["negative_prompt"]
        if job.params.get("seed"):
            if gemini:
                notes.append("seed was not sent: the Gemini API takes no seed (its images are always watermarked).")
            else:
                parameters["seed"] = int(job.params["seed"])
                parameters["addWatermark"] = False
        return {"instances": [{"prompt": job.prompt}], "parameters": parameters}

    async def run(self, job: Job) -> Outputs:
        url, headers = self._target()
        notes: list[str] = []
        answer = await self.up.http.request("POST", url, json=self.body(job, notes), headers=headers,
                                            time_limit=self.up.timeout)
        if answer.status != 200:
            raise error_for(answer)
        predictions = answer.json_object().get("predictions") or []
        if not isinstance(predictions, list):
            raise UpstreamBadResponse("Imagen answered predictions that are not a list.")
        images = [await self._image(p) for p in predictions if isinstance(p, dict) and p.get("bytesBase64Encoded")]
        if not images:
            reasons = [str(p["raiFilteredReason"]) for p in predictions
                       if isinstance(p, dict) and p.get("raiFilteredReason")]
            if reasons:
                raise ContentPolicyViolation(f"Imagen filtered every image: {reasons[0][:300]}")
            raise UpstreamBadResponse("Imagen answered without an image.")
        info: dict[str, Any] = {"upstream_model": self.up.route.upstream_model, "route": self.up.route.key}
        if notes:
            info["notes"] = notes
        return Outputs(images, provider=self.name, info=info)

    async def _image(self, prediction: dict[str, Any]) -> OutputImage:
        return await decode_image(b64_bytes(prediction["bytesBase64Encoded"]))
