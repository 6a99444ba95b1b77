"""Typed form of a model page. One YAML file in ``models/`` is one ``ModelSpec``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator


def _localized(value: Any) -> Any:
    """A text field is either a plain English string or ``{lang: text}`` with ``en`` present."""
    return {"en": value} if isinstance(value, str) else value


LocalizedText = Annotated[dict[str, str], BeforeValidator(_localized)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IntegerFormat(_Spec):
    """A text param whose non-empty value must be a base-10 integer within bounds."""

    min: int
    max: int


class ParamSpec(_Spec):
    key: str
    type: Literal["select", "text"]
    required: bool = False
    default: str | None = None
    options: tuple[str, ...] | None = None
    label: LocalizedText
    description: LocalizedText | None = None
    integer: IntegerFormat | None = None
    max_length: int | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ParamSpec:
        if self.type == "select":
            if not self.options:
                raise ValueError(f"select param {self.key!r} needs options")
            if self.default is not None and self.default not in self.options:
                raise ValueError(f"default of {self.key!r} is not one of its options")
        elif self.options is not None:
            raise ValueError(f"text param {self.key!r} cannot have options")
        return self


class KindLimit(_Spec):
    kind: Literal["image", "video", "audio"]
    max_bytes: int
    mime_types: tuple[str, ...]


class ReferenceRules(_Spec):
    max_files: int = Field(ge=1)
    kinds: tuple[Literal["image", "video", "audio"], ...]
    limits: tuple[KindLimit, ...]
    description: LocalizedText | None = None

    def limit_for(self, kind: str) -> KindLimit | None:
        return next((limit for limit in self.limits if limit.kind == kind), None)


OPTIONS_KEY = "requestOptions"
"""Where a task keeps its request options inside its stored ``params``: never a param key, and
refused as one on the task API (an unknown parameter), so a client cannot set it there."""


class TextLimit(_Spec):
    max_length: int = Field(ge=1)


class RequestOptionRules(_Spec):
    """Request options the image doors (the image-edit API, ``/v1/images/*``) may set for this
    model, beyond its seed params: which of them, with which values. Not seed params: the task API
    never takes them. Every route of the model honours each option declared here (the adapters
    and the sandbox); a door refuses an undeclared one by name before anything is reserved."""

    output_format: tuple[Literal["png", "jpeg", "webp"], ...] | None = None
    output_compression: IntegerFormat | None = None
    """0-100 for jpeg and webp (OpenAI's scale: 100 is the least compressed)."""
    background: tuple[Literal["transparent", "opaque", "auto"], ...] | None = None
    input_fidelity: tuple[Literal["high", "low"], ...] | None = None
    """Edits only (requests with input images)."""
    moderation: tuple[Literal["auto", "low"], ...] | None = None
    user: TextLimit | None = None
    """An end-user id, passed on for the upstream's abuse monitoring."""


class PriceModifier(_Spec):
    """Extra credits when a param has a value (operators' option; the seed pages have none)."""

    param: str
    value: str
    credits: int


class OutputSpec(_Spec):
    """What the real upstream returns: pixel size per option of ``size_param``, and format."""

    size_param: str | None = None
    sizes: dict[str, tuple[int, int]]
    format_param: str | None = None
    default_format: Literal["png", "jpeg", "webp"] = "png"
    note: str | None = None

    def size_for(self, params: dict[str, str]) -> tuple[int, int]:
        key = params.get(self.size_param, "") if self.size_param else "default"
        return self.sizes[key]

    def format_for(self, params: dict[str, str], asked: str | None = None) -> str:
        """The format of the output: the model's format param, else the ``output_format``
        request option ``asked``, else the default."""
        if self.format_param and self.format_param in params:
            return params[self.format_param]
        return asked or self.default_format


class ModelSpec(_Spec):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,62}$")
    name: str
    summary: LocalizedText
    capability: Literal["image"]
    inputs: tuple[Literal["text", "file"], ...]
    files_api: Literal["required_for_reference", "not_required"]
    billing: Literal["FIXED"]
    base_credits: int = Field(ge=0)
    price_modifiers: tuple[PriceModifier, ...] = ()
    prompt_max_chars: int | None = None
    params: tuple[ParamSpec, ...] = ()
    references: ReferenceRules | None = None
    output: OutputSpec
    request_options: RequestOptionRules = RequestOptionRules()
    partial_images: int = Field(default=0, ge=0, le=3)
    """How many partial images (previews) a task of this model asks for when the task API made
    it (the doors that stream take the client's ``partial_images``): shown as ``partial`` task
    events while it runs. Only routes whose upstream streams make them; never billed."""
    upstream: LocalizedText | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        keys = [p.key for p in self.params]
        if len(keys) != len(set(keys)) or {"referenceMediaItems", OPTIONS_KEY} & set(keys):
            raise ValueError(f"{self.id}: param keys must be unique and not referenceMediaItems or {OPTIONS_KEY}")
        if ("file" in self.inputs) != (self.references is not None):
            raise ValueError(f"{self.id}: 'file' input and reference rules go together")
        out = self.output
        if out.size_param is not None:
            param = self.param(out.size_param)
            if param is None or set(param.options or ()) != set(out.sizes):
                raise ValueError(f"{self.id}: output sizes must cover every {out.size_param}")
        elif set(out.sizes) != {"default"}:
            raise ValueError(f"{self.id}: without size_param, sizes has the one key 'default'")
        formats = self.request_options.output_format
        if formats is not None and (out.format_param is not None or out.default_format not in formats):
            raise ValueError(f"{self.id}: an output_format option needs no format param and the default among it")
        for mod in self.price_modifiers:
            param = self.param(mod.param)
            if param is None or (param.options and mod.value not in param.options):
                raise ValueError(f"{self.id}: price modifier on unknown {mod.param}={mod.value}")
        return self

    def param(self, key: str) -> ParamSpec | None:
        return next((p for p in self.params if p.key == key), None)

    def price(self, params: dict[str, str]) -> int:
        extra = sum(m.credits for m in self.price_modifiers if params.get(m.param) == m.value)
        return max(0, self.base_credits + extra)
