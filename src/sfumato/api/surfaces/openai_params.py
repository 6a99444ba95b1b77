"""OpenAI Images request fields → a catalog task request (pure; no I/O).

The catalog decides: ``size`` maps to whichever option of the model's size parameter makes
those pixels (``output.sizes``), ``output_format`` to its format parameter, ``quality`` to its
quality parameter. ``auto`` (and an absent field) means the model's default. A value the model
cannot honour is a 400 naming the OpenAI field, never a silent substitute; the few documented
substitutes (``quality`` ``low`` → ``medium``, dall-e's ``standard``/``hd``) are :data:`QUALITY`,
which the image-edit door uses too.

Refusals are in OpenAI's terms: ``param`` is OpenAI's field, the message one or two sentences
naming it, ``code`` OpenAI's (``invalid_value``, ``missing_required_parameter``, ...). What the
task service refuses later names sfumato's fields (``params.referenceMediaItems``); the door
re-raises it through :func:`in_openai_terms` (the one table: :func:`sfumato_to_openai`).

``output_format`` (of a model without a format parameter), ``output_compression``,
``background``, ``input_fidelity`` (edits), ``moderation`` and ``user`` are request options,
read against the model's ``request_options`` in the catalog (``catalog/options.py``) and carried
to the provider with the task; a model that does not declare one refuses it by name.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sfumato.api.errors import openai_message
from sfumato.catalog import Catalog, ModelSpec
from sfumato.catalog.options import NO_OPTIONS, OPTION_KEYS, RequestOptions, read_options
from sfumato.catalog.validate import REFERENCES_KEY
from sfumato.errors import FieldError, ValidationFailed

MODEL_ALIASES = {"gpt-image-1.5": "gpt-image-1-5"}
"""OpenAI's own model names for catalog models (OpenAI SDK users send these)."""
OPENAI_NAMES = {model_id: name for name, model_id in MODEL_ALIASES.items()}
"""A catalog id → the name OpenAI's users know it by (what messages call it)."""
QUALITY: dict[str, str | None] = {"auto": None, "low": "medium", "medium": "medium", "high": "high",
                                  "standard": None, "hd": "high"}
"""OpenAI's ``quality`` → the catalog's quality option (``None``: the model's default), on both
doors. A model whose quality param offers the value itself takes it as is; otherwise this
substitute: ``low`` is ``medium`` (the catalog's lowest), dall-e's ``standard`` is the default
quality and its ``hd`` is ``high``. A model without a quality param takes only those meaning
its default (``auto``, ``standard``)."""
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


def name_of(spec: ModelSpec) -> str:
    """What messages call ``spec``: OpenAI's name for it where it has one."""
    return OPENAI_NAMES.get(spec.id, spec.id)


def _named(text: str) -> str:
    """``text`` (a catalog or task-service message) with the models called by OpenAI's names."""
    for model_id, name in OPENAI_NAMES.items():
        text = text.replace(model_id, name)
    return text


def _or(values: list[str], word: str = "or") -> str:
    return f" {word} ".join(filter(None, [", ".join(values[:-1]), values[-1]])) if values else "nothing"


def _shown(value: Any) -> str:
    return f"'{value[:80]}'" if isinstance(value, str) else repr(value)[:80]


def refused(param: str, sentence: str, code: str = "invalid_value") -> ValidationFailed:
    """A refusal in OpenAI's terms: ``sentence`` is the whole message, ``param`` OpenAI's field
    and ``code`` OpenAI's code for what is wrong with it."""
    failure = ValidationFailed(sentence, [FieldError(param, sentence)])
    failure.code = code
    return failure


def _bad(param: str, value: Any, reason: str) -> ValidationFailed:
    return refused(param, f"Invalid value for '{param}': {_shown(value)}. {reason}")


def model_of(raw: Any, catalog: Catalog) -> ModelSpec:
    name = raw if isinstance(raw, str) else ""
    spec = catalog.get(MODEL_ALIASES.get(name, name))
    if spec is None:
        known = _or([OPENAI_NAMES.get(model_id, model_id) for model_id in catalog.ids], "and")
        raise refused("model", f"The model {_shown(raw)} does not exist here; this server has {known}.",
                      "model_not_found")
    return spec


def sizes_of(spec: ModelSpec) -> dict[str, str | None]:
    """OpenAI's ``size`` values for ``spec`` → its size param's option (``auto``: ``None``, the
    default), from the catalog's ``output.sizes``; on both doors."""
    sizes: dict[str, str | None] = {"auto": None}
    if spec.output.size_param is not None:
        for option, (width, height) in spec.output.sizes.items():
            sizes.setdefault(f"{width}x{height}", option)
    return sizes


def _size(spec: ModelSpec, raw: Any, params: dict[str, str]) -> str | None:
    if raw is None:
        return None
    sizes = sizes_of(spec)
    if not isinstance(raw, str) or raw not in sizes:
        offered = [size for size in sizes if size != "auto"]
        reason = f"{name_of(spec)} makes {_or(offered)} (or auto)." if offered else \
            f"{name_of(spec)} makes one size: send auto or leave size out."
        raise _bad("size", raw, reason)
    option = sizes[raw]
    if option is not None and spec.output.size_param is not None:
        params[spec.output.size_param] = option
    return None if option is None else str(raw)


def _quality(spec: ModelSpec, raw: Any, params: dict[str, str]) -> None:
    """OpenAI's ``quality`` onto the model's ``quality`` param, through :data:`QUALITY`."""
    if raw is None:
        return
    param = spec.param("quality")
    options = list(param.options or ()) if param is not None else []
    taken = {value: value if value in options else target for value, target in QUALITY.items()}
    taken = {value: target for value, target in taken.items() if target is None or target in options}
    if not isinstance(raw, str) or raw not in taken:
        reason = f"{name_of(spec)} takes quality {_or(list(taken))}." if options else \
            f"{name_of(spec)} has one quality: send auto or standard, or leave quality out."
        raise _bad("quality", raw, reason)
    if (target := taken[raw]) is not None:
        params["quality"] = target


def _output_format(spec: ModelSpec, raw: Any, params: dict[str, str]) -> None:
    """A model whose format is a param (qwen-image) takes ``output_format`` there; for the
    others it is a request option (:func:`_options`)."""
    fmt_param = spec.output.format_param
    if fmt_param is None or raw in (None, "auto"):
        return
    param = spec.param(fmt_param)
    options = list(param.options or ()) if param is not None else []
    if raw not in options:
        raise _bad("output_format", raw, f"{name_of(spec)} makes {_or(options)} (or auto).")
    params[fmt_param] = str(raw)


def _options(spec: ModelSpec, body: dict[str, Any], params: dict[str, str], edit: bool) -> RequestOptions:
    raw = {key: body.get(key) for key in OPTION_KEYS}
    if raw["output_format"] == "auto":
        raw["output_format"] = None
    options, problems = read_options(spec, raw, params, edit=edit)
    if problems:
        sentences = [f"Invalid value for '{p.field}': {_shown(raw.get(p.field))}. {_named(p.message)}"
                     for p in problems]
        failure = ValidationFailed(" ".join(sentences), [FieldError(p.field, s) for p, s in
                                                         zip(problems, sentences, strict=True)])
        failure.code = "invalid_value"
        raise failure
    return options


def _count(raw: Any, param: str, low: int, high: int) -> int:
    """A count as JSON or a multipart form carries it (leading zeros allowed), from ``low`` to
    ``high``. ASCII digits only: ``"²".isdigit()`` is true yet ``int("²")`` raises (a 500), and
    ``"٣"`` is no count."""
    if isinstance(raw, bool) or not isinstance(raw, int | str) or not re.fullmatch(r"-?0*[0-9]{1,6}", str(raw)):
        raise refused(param, f"Invalid type for '{param}': {_shown(raw)}. Send an integer from {low} to {high}.",
                      "invalid_type")
    number = int(raw)
    if number > high:
        raise refused(param, f"Invalid value for '{param}': {number} is above the maximum of {high}.",
                      "integer_above_max_value")
    if number < low:
        raise refused(param, f"Invalid value for '{param}': {number} is below the minimum of {low}.",
                      "integer_below_min_value")
    return number


def _prompt(raw: Any) -> str:
    if raw is None:
        raise refused("prompt", "Missing required parameter: 'prompt'.", "missing_required_parameter")
    if not isinstance(raw, str):
        raise refused("prompt", f"Invalid type for 'prompt': {_shown(raw)}. Send a string.", "invalid_type")
    if not raw.strip():
        raise refused("prompt", "Invalid value for 'prompt': it is empty. Describe the image to make.")
    return raw


def to_task(body: dict[str, Any], catalog: Catalog, *, edit: bool = False) -> OpenAIRequest:
    """Check an OpenAI images request and map it onto the catalog; ``ValidationFailed`` naming
    the first OpenAI field that cannot be honoured. ``edit``: ``/v1/images/edits``."""
    unknown = sorted(set(body) - set(KNOWN) - {"image", "image[]", "images", "mask"})
    if unknown:
        raise refused(unknown[0], f"Unknown parameter: {_shown(unknown[0])}.", "unknown_parameter")
    spec = model_of(body.get("model", "gpt-image-1.5"), catalog)
    prompt = _prompt(body.get("prompt"))
    n = _count(body.get("n", 1), "n", 1, MAX_N)
    response_format = body.get("response_format") or "b64_json"
    if response_format not in ("b64_json", "url"):
        raise _bad("response_format", response_format, "Send b64_json or url.")
    stream = _flag(body.get("stream", False), "stream")
    partial = _count(body.get("partial_images", 0), "partial_images", 0, MAX_PARTIAL_IMAGES)
    params: dict[str, str] = {}
    size = _size(spec, body.get("size"), params)
    _quality(spec, body.get("quality"), params)
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
    raise refused(param, f"Invalid type for '{param}': {_shown(raw)}. Send true or false.", "invalid_type")


def check_images(spec: ModelSpec, count: int, param: str, most: int) -> None:
    """``count`` input images for an edit by ``spec``, checked before any is stored: at least one,
    at most what the model takes (and ``most``, the door's cap)."""
    rules = spec.references
    takes = min(rules.max_files, most) if rules is not None and "image" in rules.kinds else 0
    if count == 0:
        raise refused(param, f"Missing required parameter: '{param}'.", "missing_required_parameter")
    if takes == 0:
        raise refused(param, f"Invalid value for '{param}': {name_of(spec)} takes no input images; "
                             "make images with it at /v1/images/generations.")
    if count > takes:
        limit = "1 image" if takes == 1 else f"at most {takes} images"
        raise refused(param, f"Invalid value for '{param}': {count} images sent; {name_of(spec)} takes {limit}.")


def sfumato_to_openai(spec: ModelSpec) -> dict[str, str]:
    """The one table of names: a field as the task service names it (``validate_task_request``,
    the references check, an upload's ``file``) → OpenAI's, for a request to ``spec``."""
    names = {"model": "model", "prompt": "prompt", "params.quality": "quality", f"params.{REFERENCES_KEY}": "image",
             "file": "image"}
    if spec.output.size_param is not None:
        names[f"params.{spec.output.size_param}"] = "size"
    if spec.output.format_param is not None:
        names[f"params.{spec.output.format_param}"] = "output_format"
    return names


def openai_field(field: str, spec: ModelSpec, images: str = "image") -> str:
    """OpenAI's name for sfumato's ``field``. ``images``: the field the request sent its images in
    (``image``, a multipart edit's parts; ``images``, a JSON edit's list, whose index is kept)."""
    for ours, theirs in sfumato_to_openai(spec).items():
        rest = field.removeprefix(ours)
        if field.startswith(ours) and rest[:1] in ("", "[", "."):
            index = re.match(r"\[([0-9]+)\]", rest)
            if theirs == "image" and images == "images":
                return f"images[{index.group(1)}]" if index else "images"
            return theirs
    return field.removeprefix("params.")


@contextlib.contextmanager
def in_openai_terms(spec: ModelSpec, *, images: str = "image") -> Iterator[None]:
    """Re-raise a refusal from inside (the task service names sfumato's fields) in OpenAI's terms:
    its fields through :func:`sfumato_to_openai`, its models by OpenAI's names, one message of
    sentences, OpenAI's ``invalid_value`` code. Refusals already in those terms pass unchanged."""
    try:
        yield
    except ValidationFailed as failure:
        details = [FieldError(openai_field(d.field, spec, images), _named(d.message)) for d in failure.details]
        translated = ValidationFailed(openai_message(_named(failure.message), details), details)
        translated.status = failure.status
        translated.code = "invalid_value" if failure.code == ValidationFailed.code else failure.code
        raise translated from None
