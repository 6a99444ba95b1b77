"""Request bodies for the OpenAPI document: the rules the server checks, written as JSON Schema.

So that a request the document allows is one the server accepts, and the reverse
(``tests/test_openapi_fuzz.py`` runs Schemathesis with every check on it). Bodies that depend on
the catalog have one branch per model; they are built from the catalog and limits passed in. The
routes pass the built-in catalog and the default limits: a server with ``SFUMATO_CATALOG_DIR`` or
another ``SFUMATO_MAX_PROMPT_CHARS`` checks its own, which this document does not show.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sfumato.catalog import Catalog, ModelSpec, ParamSpec, load_catalog
from sfumato.catalog.options import ALPHA_FORMATS, LOSSLESS, UNCOMPRESSED
from sfumato.catalog.spec import ReferenceRules
from sfumato.settings import Settings

BUILTIN_CATALOG = load_catalog()
DEFAULT_PROMPT_CAP: int = Settings.model_fields["max_prompt_chars"].default


def _char_class(ranges: tuple[tuple[int, int], ...]) -> str:
    def char(code: int) -> str:  # astral characters as themselves: ECMA, Python and Rust agree
        return f"\\u{code:04x}" if code <= 0xFFFF else chr(code)
    return "".join(char(a) if a == b else f"{char(a)}-{char(b)}" for a, b in ranges)


CONTROL = ((0x00, 0x1F), (0x7F, 0x9F), (0xAD, 0xAD), (0x600, 0x605), (0x61C, 0x61C), (0x6DD, 0x6DD),
           (0x70F, 0x70F), (0x890, 0x891), (0x8E2, 0x8E2), (0x180E, 0x180E), (0x200B, 0x200F), (0x202A, 0x202E),
           (0x2060, 0x2064), (0x2066, 0x206F), (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFB), (0x110BD, 0x110BD),
           (0x110CD, 0x110CD), (0x13430, 0x13438), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0001, 0xE0001),
           (0xE0020, 0xE007F))
"""Unicode categories Cc and Cf (this Python's Unicode; a test compares), refused in ``client_request_id``."""
FALSY: list[Any] = [None, "", False, 0, [], {}]
"""Values a door reads as "not given" (it tests truthiness)."""
PROMPT_FORMAT = "sfumato-prompt"
PROMPT_RULE = ("Needs a visible character: a letter, mark, number, punctuation or symbol (Unicode categories L, "
               "M, N, P, S); spaces, control, format, private-use and unassigned characters alone are refused.")

CURSOR_FORMAT = "sfumato-cursor"
FILE_ID_FORMAT, FILE_URL_FORMAT, DATA_URL_FORMAT = "sfumato-file-id", "sfumato-file-url", "sfumato-image-data-url"
CURSOR = {"type": "string", "format": CURSOR_FORMAT, "maxLength": 500,
          "description": "Opaque: the `next_cursor` of the previous page. Any other value is 422 validation_failed."}
FILE_ID = {"type": "string", "format": FILE_ID_FORMAT, "minLength": 1,
           "description": "The id of a file of yours (`POST /api/v1/files`, or a task's output); another is refused."}
FILE_URL = {"type": "string", "format": FILE_URL_FORMAT, "minLength": 1,
            "description": "A file URL this server issued for a file of yours (its path "
            "`/api/v1/files/{id}/content` names the file; any host); another is validation_failed."}
DATA_URL = {"type": "string", "format": DATA_URL_FORMAT,
            "description": "`data:image/png;base64,…`: a JPEG, PNG or WebP image, kept as an upload."}

UPLOAD_TYPES = ("image/jpeg, image/png, image/webp, video/mp4, video/webm, audio/mp4, audio/wav, audio/ogg, "
                "audio/flac, audio/mpeg")
"""What ``files/sniff.py`` recognises, from the bytes (the part's own Content-Type is not read)."""


def upload_body(max_parts: int) -> dict[str, Any]:
    """``POST /api/v1/files``: one file part ``file``; other text parts are ignored, up to ``max_parts`` parts."""
    form = {"type": "object", "required": ["file"], "maxProperties": max_parts,
            "properties": {"file": {"type": "string", "format": "binary", "minLength": 1,
                                    "description": "The file; its type is decided from its bytes."}},
            "additionalProperties": {"type": "string"}}
    return {"required": True, "content": {"multipart/form-data": {
        "schema": form, "encoding": {"file": {"contentType": UPLOAD_TYPES}}}}}


_LABEL = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PORT = "6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}"
WEBHOOK_URL_MAX = 2048
WEBHOOK_URL_PATTERN = (
    f"^[Hh][Tt][Tt][Pp][Ss]?://(?:{_LABEL}\\.)*(?![Ll][Oo][Cc][Aa][Ll][Hh][Oo][Ss][Tt]\\.?(?:[:/?#]|$))"
    f"[A-Za-z](?:[A-Za-z0-9-]{{0,61}}[A-Za-z0-9])?\\.?(?::(?:{_PORT}))?(?:[/?#][^\\u0000-\\u0020\\u007f\\\\]*)?$"
)
WEBHOOK_URL_RULES = (
    "An absolute http(s) URL with a host name (not `localhost`), no credentials, spaces, control characters "
    "or backslashes; every address the name resolves to must be public (unless the operator allows private "
    "ones). An IP-address host, which this pattern leaves out, is accepted only as a public dotted quad or "
    "bracketed IPv6 address."
)
WEBHOOK_URL: dict[str, Any] = {"type": ["string", "null"], "maxLength": WEBHOOK_URL_MAX,
                               "pattern": WEBHOOK_URL_PATTERN, "description": WEBHOOK_URL_RULES}


class WebhookSettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")  # like every other body here: an unknown key is 422
    url: str | None = Field(description="The account's default webhook URL; null turns it off. " + WEBHOOK_URL_RULES,
                            examples=["https://example.com/hooks/sfumato"],
                            json_schema_extra={"maxLength": WEBHOOK_URL_MAX, "pattern": WEBHOOK_URL_PATTERN})


def _digits(low: int, high: int) -> list[str]:
    """Regex alternatives matching exactly the integers ``low..high`` (``0 <= low``), written plainly."""
    parts = []
    for length in range(len(str(low)), len(str(high)) + 1):
        lo, hi = max(low, 10 ** (length - 1) if length > 1 else 0), min(high, 10**length - 1)
        while lo <= hi:  # the largest aligned block from lo, then as many such blocks as share a prefix
            free = 0
            while free + 1 < length and lo % 10 ** (free + 1) == 0 and lo + 10 ** (free + 1) - 1 <= hi:
                free += 1
            step, count = 10**free, 1
            while (lo // step + count) % 10 and lo + (count + 1) * step - 1 <= hi:
                count += 1
            prefix, first = divmod(lo // step, 10)
            digit = str(first) if count == 1 else f"[{first}-{first + count - 1}]"
            tail = "" if free == 0 else "[0-9]" if free == 1 else f"[0-9]{{{free}}}"
            parts.append(f"{prefix if length - free > 1 else ''}{digit}{tail}")
            lo += count * step
    return parts


def integer_text_pattern(low: int, high: int) -> str:
    """A text param with an integer format, as the validator reads it: empty, or base-10 digits
    (a leading ``-``, leading zeros and ``-0`` allowed) within bounds."""
    forms = []
    if high >= 0:
        forms.append(f"0*(?:{'|'.join(_digits(max(low, 0), high))})")
    if low <= 0 <= high:
        forms.append("-0+")
    if low < 0:
        forms.append(f"-0*(?:{'|'.join(_digits(max(1, -high), -low))})")
    return f"^(?:{'|'.join(forms)})?$"


def _prompt(limit: int) -> dict[str, Any]:
    """A prompt: a JSON Schema pattern for "has a visible character" would list some 700 ranges of
    code points, so the rule has a format of its own, with the rule in words."""
    return {"type": "string", "format": PROMPT_FORMAT, "minLength": 1, "maxLength": limit,
            "description": f"{PROMPT_RULE} At most {limit} characters."}


def _param(param: ParamSpec) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "title": param.label["en"]}
    if param.description:
        schema["description"] = param.description["en"]
    if param.type == "select":
        return {**schema, "enum": list(param.options or ()), **({"default": param.default} if param.default else {})}
    if param.max_length is not None:
        schema["maxLength"] = param.max_length
    if param.integer is not None:
        schema["pattern"] = integer_text_pattern(param.integer.min, param.integer.max)
    return schema


def _references(rules: ReferenceRules) -> dict[str, Any]:
    # null kind or mimeType is "left out" to the validator (``catalog/validate.py``), so here too
    kinds = [{"properties": {"kind": {"const": kind},
                             **({"mimeType": {"enum": [*limit.mime_types, None]}} if (limit := rules.limit_for(kind))
                                else {})}} for kind in rules.kinds]
    accepted = [m for one in rules.limits if one.kind in rules.kinds for m in one.mime_types]
    kinds.append({"properties": {"kind": {"type": "null"}, "mimeType": {"enum": [*accepted, None]}}})
    nullable = {"type": ["string", "null"]}
    item = {"type": "object", "additionalProperties": False, "required": ["url"],
            "properties": {"url": FILE_URL, "kind": {"type": ["string", "null"], "enum": [*rules.kinds, None]},
                           "mimeType": {"type": ["string", "null"], "minLength": 1}, "name": nullable,
                           "durationToken": nullable, "width": {}, "height": {}, "bytes": {}},
            "anyOf": kinds}
    return {"type": "array", "maxItems": rules.max_files, "items": item,
            "description": "Files of yours, by the url their upload (or an earlier task) returned; kind and "
            "mimeType may be left out (they are filled in from the file), and given, must be the file's own."}


def _task_branch(spec: ModelSpec, prompt_cap: int) -> dict[str, Any]:
    params: dict[str, Any] = {p.key: _param(p) for p in spec.params}
    if spec.references is not None:
        params["referenceMediaItems"] = _references(spec.references)
    required = [p.key for p in spec.params if p.required]
    body: dict[str, Any] = {
        "type": "object", "title": spec.id, "additionalProperties": False,
        "required": ["model", "prompt", *(["params"] if required else [])],
        "properties": {
            "model": {"const": spec.id}, "prompt": _prompt(spec.prompt_max_chars or prompt_cap),
            "params": {"type": ["object"] if required else ["object", "null"], "additionalProperties": False,
                       "properties": params, **({"required": required} if required else {})},
            "client_request_id": {"type": ["string", "null"], "minLength": 1, "maxLength": 255,
                                  "pattern": f"^[^{_char_class(CONTROL)}]*$",
                                  "description": "Your id for this request; also the idempotency key "
                                  "(same id and body: same task). No control or format characters."},
            "webhook_url": {**WEBHOOK_URL, "description": "POSTed the task object when the task ends (signed, "
                            "Standard Webhooks); overrides the account's default URL. " + WEBHOOK_URL_RULES},
            "priority": {"enum": ["normal", "low", None], "default": "normal",
                         "description": "`low`: placed SFUMATO_LOW_PRIORITY_AGEING turns of the queue behind "
                         "`normal` tasks, then at the front (it never starves)."},
        },
    }
    return body


def task_create_body(catalog: Catalog, prompt_cap: int) -> dict[str, Any]:
    """The create-task body: one branch per model (``model`` says which), each with its own params."""
    return {"oneOf": [_task_branch(spec, prompt_cap) for spec in catalog],
            "example": {"model": "gpt-image-1-5", "prompt": "A clean editorial product image on a soft studio "
                        "background", "params": {"quality": "medium", "aspect_ratio": "1:1"}}}


def _formats(spec: ModelSpec) -> tuple[str, ...]:
    """The output formats a request can ask of ``spec``: its format param's, or its request option's."""
    param = spec.param(spec.output.format_param) if spec.output.format_param else None
    if param is not None:
        return param.options or ()
    return spec.request_options.output_format or (spec.output.default_format,)


def option_rules(spec: ModelSpec, unset: list[Any]) -> list[dict[str, Any]]:
    """The rules between request options (``catalog/options.py``), as ``allOf`` clauses: a
    transparent background needs an alpha format, compression below 100 a lossy one. ``unset``:
    the ``output_format`` values that mean the model's default."""
    rules, formats, default = spec.request_options, _formats(spec), spec.output.default_format
    clauses = []
    if "transparent" in (rules.background or ()):
        alpha = [f for f in formats if f in ALPHA_FORMATS]
        with_alpha: dict[str, Any] = (
            {"properties": {"output_format": {"enum": [*unset, *alpha]}}} if default in ALPHA_FORMATS
            else {"required": ["output_format"], "properties": {"output_format": {"enum": alpha}}})
        clauses.append({"anyOf": [{"properties": {"background": {"not": {"const": "transparent"}}}}, with_alpha]})
    if rules.output_compression is not None and LOSSLESS in formats:
        lossy = [f for f in formats if f != LOSSLESS]
        compressible: dict[str, Any] = (
            {"required": ["output_format"], "properties": {"output_format": {"enum": lossy}}} if default == LOSSLESS
            else {"properties": {"output_format": {"enum": [*unset, *lossy]}}})
        clauses.append({"anyOf": [{"not": {"required": ["output_compression"]}}, compressible, {"properties": {
            "output_compression": {"enum": [None, UNCOMPRESSED, str(UNCOMPRESSED)]}}}]})
    return clauses


def _option_properties(spec: ModelSpec, unset: list[Any], *, form: bool, edit: bool) -> dict[str, Any]:
    """The request options on the OpenAI door: a declared one with its values, an undeclared one
    only with the values that ask nothing of the model (``null`` included, outside a form)."""
    rules = spec.request_options
    nothing: dict[str, Any] = {"type": "null", "description": f"Not available for {spec.id}."}
    props: dict[str, Any] = {
        "output_format": {"enum": [*unset, "auto", *_formats(spec)]},
        "background": {"enum": [*unset, *(rules.background or ("auto", "opaque"))]},
        "moderation": {"enum": [*unset, *(rules.moderation or ("auto",))]},
        **({} if form else {key: nothing for key in ("output_compression", "input_fidelity", "user")}),
    }
    if rules.output_compression is not None:
        low, high = rules.output_compression.min, rules.output_compression.max
        text = {"type": "string", "pattern": f"^(?:{'|'.join(_digits(low, high))})$"}
        props["output_compression"] = text if form else {"anyOf": [
            {"type": "integer", "minimum": low, "maximum": high}, text, {"type": "null"}]}
    if rules.input_fidelity is not None and edit:
        props["input_fidelity"] = {"enum": [*unset, *rules.input_fidelity]}
    if rules.user is not None:
        props["user"] = {"type": "string" if form else ["string", "null"], "maxLength": rules.user.max_length}
    return props


def _openai_branch(spec: ModelSpec, names: list[str], limit: int, *, form: bool, optional_model: bool,
                   ignored: tuple[str, ...], max_n: int, edit: bool) -> dict[str, Any]:
    """One model on the OpenAI door. ``form``: the multipart edit, where every field is a string
    (and so cannot be null)."""
    unset: list[Any] = [] if form else [None]
    sizes = sorted({f"{w}x{h}" for w, h in spec.output.sizes.values()}) if spec.output.size_param else []
    quality = spec.param("quality")
    n_text = {"type": "string", "pattern": f"^0*(?:{'|'.join(_digits(1, max_n))})$"}
    properties: dict[str, Any] = {
        "model": {"type": "string", "enum": names}, "prompt": _prompt(limit),
        "n": n_text if form else {"anyOf": [{"type": "integer", "minimum": 1, "maximum": max_n}, n_text]},
        "size": {"enum": [*unset, "auto", *sizes]},
        "quality": {"enum": [*unset, "auto", *(quality.options or () if quality else ())]},
        "response_format": {"enum": ["b64_json", "url", *([""] if form else FALSY)],
                            "description": "b64_json (the default; an empty value means it too) or url."},
        **_option_properties(spec, unset, form=form, edit=edit),
        "stream": {"enum": ["true", "false"]} if form else {"type": "boolean"},
        "partial_images": {"type": "string", "pattern": "^[0-3]$"} if form else {"anyOf": [
            {"type": "integer", "minimum": 0, "maximum": 3}, {"type": "string", "pattern": "^[0-3]$"}]},
        **{key: ({"type": "string"} if form else {}) | {"description": "Accepted and ignored."} for key in ignored},
    }
    required = ["prompt"] if optional_model else ["model", "prompt"]
    rules = option_rules(spec, [*unset, "auto"])
    return {"type": "object", "title": spec.id, "additionalProperties": False, "required": required,
            "properties": properties, **({"allOf": rules} if rules else {})}


def _openai_branches(catalog: Catalog, aliases: dict[str, str], prompt_cap: int, default_model: str, *,
                     edits: bool, form: bool, **kwargs: Any) -> list[dict[str, Any]]:
    """A branch per model; for an edit, per model that takes reference images, with at most that many."""
    branches = []
    for spec in catalog:
        if edits and spec.references is None:
            continue
        branch = _openai_branch(spec, [spec.id, *(a for a, target in aliases.items() if target == spec.id)],
                                spec.prompt_max_chars or prompt_cap, form=form, edit=edits,
                                optional_model=aliases.get(default_model, default_model) == spec.id, **kwargs)
        if spec.references is not None:
            branch["x-max-images"] = spec.references.max_files
        branches.append(branch)
    return branches


_EDIT_IMAGE = {"type": "object", "description": "`{image_url}` (a data: URL or a file URL of yours) or `{file_id}`.",
               "anyOf": [{"required": ["image_url"], "properties": {"image_url": DATA_URL}},
                         {"required": ["image_url"], "properties": {"image_url": FILE_URL,
                                                                    "file_id": {"not": {"type": "string"}}}},
                         {"required": ["file_id"], "properties": {
                             "file_id": FILE_ID, "image_url": {"not": {"type": "string", "pattern": "^data:"}}}}]}


def openai_bodies(catalog: Catalog, aliases: dict[str, str], prompt_cap: int, *, default_model: str,
                  ignored: tuple[str, ...], max_n: int, max_images: int, edits: bool) -> dict[str, Any]:
    """``requestBody`` of ``/v1/images/generations`` (``edits=False``) or ``/v1/images/edits``."""
    common: dict[str, Any] = {"ignored": ignored, "max_n": max_n, "edits": edits}
    branches = _openai_branches(catalog, aliases, prompt_cap, default_model, form=False, **common)
    ignored_here = ("image", "image[]", "mask") if edits else ("image", "image[]", "images", "mask")
    for branch in branches:
        most = min(max_images, branch.pop("x-max-images", max_images))
        branch["properties"].update({key: {"description": "Ignored here."} for key in ignored_here})
        if edits:
            branch["properties"]["images"] = {"type": "array", "minItems": 1, "maxItems": most, "items": _EDIT_IMAGE}
            branch["required"].append("images")
    content: dict[str, Any] = {"application/json": {"schema": {"oneOf": branches}}}
    if edits:
        forms = _openai_branches(catalog, aliases, prompt_cap, default_model, form=True, **common)
        for form in forms:
            most = min(max_images, form.pop("x-max-images", max_images))
            form["properties"]["image"] = {"description": f"Up to {most} images."}  # described at the top
            form["required"].append("image")
        # the parts every branch has, at the top, where form tools look for file parts and encodings:
        # one ``image`` part here (a part is a file only with a filename), which may be repeated
        top = {"image": {"type": "string", "format": "binary", "description": "An image file part; repeat it "
                         "(or name the parts `image[]`) for several."}, "prompt": _prompt(prompt_cap)}
        content["multipart/form-data"] = {"schema": {"type": "object", "required": ["prompt", "image"],
                                                     "properties": top, "oneOf": forms},
                                          "encoding": {"image": {"contentType": "image/jpeg, image/png, image/webp"}}}
    return {"required": True, "content": content}


def image_edit_body(models: tuple[str, ...], choices: dict[str, tuple[str, ...]],
                    ranges: dict[str, tuple[int, int]], max_prompt: int, max_images: int,
                    options: ModelSpec | None = None) -> dict[str, Any]:
    """``requestBody`` of ``POST /api/v1/image/generation`` (spec §8), as the door checks it. Each
    image item is exactly one of ``image_url`` and ``file_id`` (the other absent or empty).
    ``options``: the model whose request options the door reads (their limits and rules)."""
    item = {"type": "object", "anyOf": [
        {"required": ["image_url"], "properties": {"image_url": DATA_URL, "file_id": {"enum": FALSY}}},
        {"required": ["image_url"], "properties": {"image_url": FILE_URL,
                                                   "file_id": {"enum": [v for v in FALSY if v != ""]}}},
        {"required": ["file_id"], "properties": {"file_id": FILE_ID, "image_url": {"enum": FALSY}}}]}
    user: dict[str, Any] = {"type": "string"}
    if options is not None and options.request_options.user is not None:
        user["maxLength"] = options.request_options.user.max_length
    schema: dict[str, Any] = {
        "type": "object", "additionalProperties": False, "required": ["images", "prompt", "model"],
        "properties": {
            "images": {"type": "array", "minItems": 1, "maxItems": max_images, "items": item},
            "prompt": _prompt(max_prompt), "model": {"type": "string", "enum": list(models)},
            **{key: {"type": "string", "enum": list(allowed)} for key, allowed in choices.items()},
            **{key: {"type": "integer", "minimum": low, "maximum": high} for key, (low, high) in ranges.items()},
            "stream": {"type": "boolean"}, "user": user,
        },
    }
    if options is not None and (rules := option_rules(options, [])):
        schema["allOf"] = rules
    return {"required": True, "content": {"application/json": {"schema": schema}}}
