"""OpenAI Images request fields → a catalog task request (pure; no I/O).

The catalog decides: ``size`` maps to whichever option of the model's size parameter makes
those pixels (``output.sizes``), ``output_format`` to its format parameter, ``quality`` to its
quality parameter. ``auto`` (and an absent field) means the model's default. A value the model
cannot honour is a 400 naming the OpenAI field, never a silent substitute.

``output_format`` (of a model without a format parameter), ``output_compression``,
``background``, ``input_fidelity`` (edits), ``moderation`` and ``user`` are request options,
read against the model's ``request_options`` in the catalog (``catalog/options.py``) and carried
to the provider with the task; a model that does not declare one refuses it by name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sfumato.catalog import Catalog, ModelSpec
from sfumato.catalog.options import NO_OPTIONS, OPTION_KEYS, RequestOptions, read_options
from sfumato.errors import FieldError, ValidationFailed

MODEL_ALIASES = {"gpt-image-1.5": "gpt-image-1-5"}
"""OpenAI's own model names for catalog models (OpenAI SDK users send these)."""
MAX_N = 10
IGNORED = ("style",)
"""Accepted and ignored: dall-e-3's, it changes nothing about the image a catalog model makes."""
KNOWN = ("model", "prompt", "n", "size", "quality", "response_format", "stream", "partial_images", *OPTION_KEYS,
         *IGNORED)
MAX_PARTIAL_IMAGES = 3


@dataclass(frozen=True)
class OpenAIRequest:
    model: ModelSpec
    prompt: str
    params: dict[str, str]
    n: int
    response_format: str
    """``b64_json`` or ``url``."""
    size: str | None
    output_format: str
    stream: bool = False
    """Answer as OpenAI's image event stream (``text/event-stream``) instead of one JSON body."""
    partial_images: int = 0
    options: RequestOptions = NO_OPTIONS
    """The request options asked for, as the model declares them (carried with the task)."""

    @property
    def background(self) -> str:
        """As OpenAI echoes it: ``transparent`` or ``opaque``, never ``auto``."""
        return "transparent" if self.options.transparent else "opaque"


def _bad(param: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"Invalid value for {param}.", [FieldError(param, message)])


def model_of(raw: Any, catalog: Catalog) -> ModelSpec:
    name = raw if isinstance(raw, str) else ""
    spec = catalog.get(MODEL_ALIASES.get(name, name))
    if spec is None:
        known = ", ".join([*catalog.ids, *MODEL_ALIASES])
        raise _bad("model", f"Unknown model {str(raw)[:80]!r}; known: {known}.")
    return spec


def _size(spec: ModelSpec, raw: Any, params: dict[str, str]) -> str | None:
    if raw in (None, "auto"):
        return None
    sizes = spec.output.sizes
    matches = [option for option, (w, h) in sizes.items() if raw == f"{w}x{h}"]
    if not matches or spec.output.size_param is None:
        offered = sorted({f"{w}x{h}" for w, h in sizes.values()}) if spec.output.size_param else []
        raise _bad("size", f"{spec.id} makes {', '.join(['auto', *offered])}.")
    params[spec.output.size_param] = matches[0]
    return str(raw)


def _select(spec: ModelSpec, key: str, raw: Any, params: dict[str, str], field: str) -> None:
    if raw in (None, "auto"):
        return
    param = spec.param(key)
    options = param.options if param is not None and param.options else ()
    if raw not in options:
        raise _bad(field, f"{spec.id} takes {field} {', '.join(['auto', *options]) if options else 'auto'}.")
    params[key] = str(raw)


def _output_format(spec: ModelSpec, raw: Any, params: dict[str, str]) -> None:
    """A model whose format is a param (qwen-image) takes ``output_format`` there; for the
    others it is a request option (:func:`_options`)."""
    fmt_param = spec.output.format_param
    if fmt_param is not None and raw not in (None, "auto"):
        _select(spec, fmt_param, raw, params, "output_format")


def _options(spec: ModelSpec, body: dict[str, Any], params: dict[str, str], edit: bool) -> RequestOptions:
    raw = {key: body.get(key) for key in OPTION_KEYS}
    if raw["output_format"] == "auto":
        raw["output_format"] = None
    options, problems = read_options(spec, raw, params, edit=edit)
    if problems:
        raise ValidationFailed(f"Invalid value for {problems[0].field}.", problems)
    return options


def to_task(body: dict[str, Any], catalog: Catalog, *, edit: bool = False) -> OpenAIRequest:
    """Check an OpenAI images request and map it onto the catalog; ``ValidationFailed`` naming
    the first OpenAI field that cannot be honoured. ``edit``: ``/v1/images/edits``."""
    unknown = sorted(set(body) - set(KNOWN) - {"image", "image[]", "images", "mask"})
    if unknown:
        raise _bad(unknown[0], f"Unrecognized request argument: {unknown[0]}.")
    spec = model_of(body.get("model", "gpt-image-1.5"), catalog)
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise _bad("prompt", "A non-empty prompt is required.")
    n = body.get("n", 1)
    # ASCII digits only: "²".isdigit() is true yet int("²") raises (a 500), and "٣" is not a count.
    n = int(n) if isinstance(n, int | str) and re.fullmatch(r"0*[0-9]{1,3}", str(n)) else -1
    if not 1 <= n <= MAX_N:
        raise _bad("n", f"n must be 1 to {MAX_N}.")
    response_format = body.get("response_format") or "b64_json"
    if response_format not in ("b64_json", "url"):
        raise _bad("response_format", "response_format must be b64_json or url.")
    stream = _flag(body.get("stream", False), "stream")
    partial = body.get("partial_images", 0)
    partial = int(partial) if isinstance(partial, int | str) and re.fullmatch(r"[0-9]", str(partial)) else -1
    if not 0 <= partial <= MAX_PARTIAL_IMAGES:
        raise _bad("partial_images", f"partial_images must be 0 to {MAX_PARTIAL_IMAGES}.")
    params: dict[str, str] = {}
    size = _size(spec, body.get("size"), params)
    _select(spec, "quality", body.get("quality"), params, "quality")
    _output_format(spec, body.get("output_format"), params)
    options = _options(spec, body, params, edit)
    output_format = spec.output.format_for(params, options.output_format)
    return OpenAIRequest(spec, prompt, params, n, response_format, size, output_format, stream, partial, options)


def _flag(raw: Any, param: str) -> bool:
    """A JSON boolean, or ``true``/``false`` as a multipart form field carries it."""
    if isinstance(raw, bool):
        return raw
    if raw in ("true", "false"):  # as the SDKs send it in a form
        return bool(raw == "true")
    raise _bad(param, f"{param} must be true or false.")
