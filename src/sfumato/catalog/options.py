"""Request options: what the image doors may ask of a model beyond its seed params (pure; no I/O).

``output_format`` with ``output_compression``, ``background``, ``input_fidelity``, ``moderation``
and ``user`` are fields of the image-edit page (spec §8) and of OpenAI's images API. The seed
task API keeps exactly its models' documented params, so these are no params: a door reads them
with :func:`read_options` against the model's ``request_options`` (catalog data), the task keeps
them in its stored params under ``OPTIONS_KEY`` (never shown to clients), and the worker hands
them to the provider typed, as ``Job.options``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sfumato.catalog.spec import OPTIONS_KEY, ModelSpec
from sfumato.errors import FieldError

__all__ = ["NO_OPTIONS", "OPTIONS_KEY", "OPTION_KEYS", "RequestOptions", "read_options"]

OPTION_KEYS = ("output_format", "output_compression", "background", "input_fidelity", "moderation", "user")
ALPHA_FORMATS = ("png", "webp")
"""Formats with an alpha channel: what a transparent background needs."""
LOSSLESS = "png"
UNCOMPRESSED = 100
"""OpenAI's default ``output_compression``: no compression asked."""
_NEUTRAL = {"background": ("auto", "opaque"), "moderation": ("auto",)}
"""Values that ask nothing of a model without the option: its images are opaque anyway, and
``auto`` is every upstream's default."""
_COUNT = re.compile(r"0|[1-9][0-9]{0,2}")


class RequestOptions(BaseModel):
    """The options one request asked for; ``None``: not asked (the upstream's default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    output_format: Literal["png", "jpeg", "webp"] | None = None
    output_compression: int | None = Field(default=None, ge=0, le=100)
    background: Literal["transparent", "opaque", "auto"] | None = None
    input_fidelity: Literal["high", "low"] | None = None
    moderation: Literal["auto", "low"] | None = None
    user: str | None = None
    partial_images: int | None = Field(default=None, ge=0, le=3)
    """Set by a door that streams (the client's ``partial_images``; 0 when it does not stream);
    ``None``: the model's catalog default (``ModelSpec.partial_images``). Not read by
    :func:`read_options`: each door decides it from its own ``stream`` field."""

    @property
    def transparent(self) -> bool:
        return self.background == "transparent"

    def stored(self) -> dict[str, Any]:
        """As kept in the task's params (only what was asked)."""
        return self.model_dump(exclude_none=True)

    def image_options(self) -> dict[str, Any]:
        """What was asked that changes the final picture (all but ``partial_images``)."""
        return self.model_dump(exclude_none=True, exclude={"partial_images"})

    def previews_for(self, spec: ModelSpec) -> int:
        """How many partial images to ask for: the door's choice, else the model's default."""
        return spec.partial_images if self.partial_images is None else self.partial_images

    @classmethod
    def from_stored(cls, raw: Any) -> RequestOptions:
        return cls.model_validate(raw) if isinstance(raw, dict) and raw else NO_OPTIONS


NO_OPTIONS = RequestOptions()


def _integer(raw: Any) -> int | None:
    """A JSON integer, or its decimal text as a multipart form carries it (no sign, no padding)."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and _COUNT.fullmatch(raw):
        return int(raw)
    return None


def _undeclared(spec: ModelSpec, key: str, value: Any) -> FieldError | None:
    """An option the model does not declare: fine if the value asks nothing, else refused by name."""
    if key == "output_format":
        if value == spec.output.default_format:
            return None
        return FieldError(key, f"{spec.id} makes {spec.output.default_format} only.")
    if value in _NEUTRAL.get(key, ()):
        return None
    if key == "background":
        return FieldError(key, f"{spec.id} makes opaque images only (background auto or opaque).")
    return FieldError(key, f"{key} is not available for {spec.id} (its routes cannot honour it).")


def _declared(spec: ModelSpec, key: str, value: Any) -> tuple[Any, FieldError | None]:
    """The value in its typed form, or what is wrong with it."""
    rule = getattr(spec.request_options, key)
    if key == "output_compression":
        number = _integer(value)
        if number is None or not rule.min <= number <= rule.max:
            return None, FieldError(key, f"output_compression must be an integer from {rule.min} to {rule.max}.")
        return number, None
    if key == "user":
        if not isinstance(value, str) or len(value) > rule.max_length:
            return None, FieldError(key, f"user must be a string of at most {rule.max_length} characters.")
        return value or None, None  # "": no end user named
    if value not in rule:
        return None, FieldError(key, f"{spec.id} takes {key} {', '.join(rule)}.")
    return value, None


def _together(values: dict[str, Any], fmt: str, *, edit: bool) -> list[FieldError]:
    """The rules between options (OpenAI's): alpha needs png or webp, compression is for the
    lossy formats, fidelity is to input images."""
    errors = []
    if values.get("background") == "transparent" and fmt not in ALPHA_FORMATS:
        errors.append(FieldError("background", f"A transparent background needs output_format png or webp; "
                                               f"{fmt} has no alpha channel."))
    if fmt == LOSSLESS and values.get("output_compression") is not None:
        if values["output_compression"] != UNCOMPRESSED:
            errors.append(FieldError("output_compression", "output_compression is for jpeg and webp output; "
                                                           "png is lossless."))
        values.pop("output_compression")  # 100 with png: what png is anyway
    if values.get("input_fidelity") is not None and not edit:
        errors.append(FieldError("input_fidelity", "input_fidelity applies to edits (requests with input images)."))
    return errors


def read_options(spec: ModelSpec, raw: Mapping[str, Any], params: Mapping[str, str], *,
                 edit: bool) -> tuple[RequestOptions, list[FieldError]]:
    """The request options of ``raw`` (a door's body; ``None`` is "not given") that ``spec``
    declares, and every problem, each naming its field. ``params``: the request's seed params
    (a model whose format is a param, qwen-image's ``output_format``, keeps it there: the door
    maps it, and it is skipped here). ``edit``: the request has input images."""
    values: dict[str, Any] = {}
    errors: list[FieldError] = []
    for key in OPTION_KEYS:
        value = raw.get(key)
        if value is None or (key == "output_format" and spec.output.format_param is not None):
            continue
        if getattr(spec.request_options, key) is None:
            problem = _undeclared(spec, key, value)
        else:
            values[key], problem = _declared(spec, key, value)
        if problem is not None:
            errors.append(problem)
    if errors:
        return NO_OPTIONS, errors
    errors = _together(values, spec.output.format_for(dict(params), values.get("output_format")), edit=edit)
    return (NO_OPTIONS, errors) if errors else (RequestOptions(**values), [])
