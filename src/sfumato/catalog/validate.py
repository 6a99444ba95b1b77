"""Checks a create-task body against the catalog, collecting every bad field at once.

Pure: no I/O. Whether a reference URL points at one of the account's files is checked later,
by the tasks service, because that needs the database.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sfumato.catalog.loader import Catalog
from sfumato.catalog.options import NO_OPTIONS, OPTIONS_KEY, RequestOptions
from sfumato.catalog.spec import IntegerFormat, ModelSpec, ParamSpec, ReferenceRules
from sfumato.catalog.text import unstorable_fields
from sfumato.errors import FieldError, ValidationFailed
from sfumato.webhooks import urls as webhook_urls

TOP_LEVEL_KEYS = ("model", "prompt", "params", "client_request_id", "webhook_url", "priority")
PRIORITIES = ("normal", "low")
REFERENCES_KEY = "referenceMediaItems"
REFERENCE_ITEM_KEYS = ("url", "kind", "name", "mimeType", "durationToken", "width", "height", "bytes")
CLIENT_REQUEST_ID_MAX = 255
_INTEGER = re.compile(r"-?[0-9]+")


@dataclass(frozen=True, slots=True)
class ReferenceItem:
    """A reference as given. ``kind`` and ``mime_type`` may be left out (``None``): the file the
    URL names has them, and ``files.references.resolve`` fills them in from it."""

    url: str
    kind: str | None
    mime_type: str | None
    name: str | None = None
    duration_token: str | None = None

    def as_dict(self) -> dict[str, str]:
        item = {"url": self.url}
        if self.kind is not None:
            item["kind"] = self.kind
        if self.mime_type is not None:
            item["mimeType"] = self.mime_type
        if self.name is not None:
            item["name"] = self.name
        if self.duration_token is not None:
            item["durationToken"] = self.duration_token
        return item


@dataclass(frozen=True, slots=True)
class TaskRequest:
    """A create-task request that passed the catalog: defaults applied, values canonical."""

    model: ModelSpec
    prompt: str
    params: dict[str, str]
    references: tuple[ReferenceItem, ...] = ()
    client_request_id: str | None = None
    webhook_url: str | None = None
    priority: str = "normal"
    """``normal`` or ``low`` (placed some turns behind, ``tasks/queue.py``)."""
    cancel_after: timedelta | None = None
    """From the ``Cancel-After`` header: the task is canceled, refunded, if not done by then."""
    options: RequestOptions = NO_OPTIONS
    """Request options a door set (``catalog/options.py``); the task API sets none."""

    @property
    def price(self) -> int:
        return self.model.price(self.params)

    def stored_params(self) -> dict[str, Any]:
        """The normalized params as kept with the task (references and request options included)."""
        stored: dict[str, Any] = dict(self.params)
        if self.references:
            stored[REFERENCES_KEY] = [ref.as_dict() for ref in self.references]
        if self.options != NO_OPTIONS:
            stored[OPTIONS_KEY] = self.options.stored()
        return stored


@dataclass
class _Errors:
    items: list[FieldError] = field(default_factory=list)

    def add(self, path: str, message: str) -> None:
        self.items.append(FieldError(path, message))


def _has_control_chars(text: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cf") for ch in text)


def _visible(text: str) -> bool:
    """Whether ``text`` has a character that is not a space, a control or a format character
    (zero-width spaces and joiners, bidi marks): a prompt of only those is charged for nothing."""
    return any(unicodedata.category(ch)[0] not in "CZ" for ch in text)


def _check_prompt(raw: Any, limit: int, errors: _Errors) -> str:
    if raw is None:
        errors.add("prompt", "The prompt is required.")
        return ""
    if not isinstance(raw, str):
        errors.add("prompt", "The prompt must be a string.")
        return ""
    if not raw.strip():
        errors.add("prompt", "The prompt must not be empty.")
    elif not _visible(raw):
        errors.add("prompt", "The prompt must contain visible text, not only invisible or control characters.")
    elif len(raw) > limit:
        errors.add("prompt", f"The prompt has {len(raw)} characters; this model allows {limit}.")
    return raw


def _check_client_request_id(raw: Any, errors: _Errors) -> str | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw:
        errors.add("client_request_id", "client_request_id must be a non-empty string.")
        return None
    if len(raw) > CLIENT_REQUEST_ID_MAX:
        errors.add("client_request_id", f"client_request_id is limited to {CLIENT_REQUEST_ID_MAX} characters.")
        return None
    if _has_control_chars(raw):
        errors.add("client_request_id", "client_request_id must not contain control characters.")
        return None
    return raw


def _check_value(spec: ParamSpec, value: Any, path: str, errors: _Errors) -> str | None:
    """Returns the canonical value, ``None`` for "not given" (empty text), or records an error."""
    if not isinstance(value, str):
        hint = f' (send it as the string "{str(value).lower()}")' if isinstance(value, bool) else ""
        errors.add(path, f"{spec.key} must be a string{hint}.")
        return None
    if spec.type == "select":
        if value not in (spec.options or ()):
            errors.add(path, f"{value!r} is not one of: {', '.join(spec.options or ())}.")
            return None
        return value
    if value == "":
        return None
    if spec.max_length is not None and len(value) > spec.max_length:
        errors.add(path, f"{spec.key} is limited to {spec.max_length} characters.")
        return None
    if spec.integer is not None:
        return _check_integer(spec.key, spec.integer, value, path, errors)
    return value


def _check_integer(key: str, bounds: IntegerFormat, value: str, path: str, errors: _Errors) -> str | None:
    """Canonical base-10 form ("007" -> "7") within bounds, or an error. Exactly the digits
    (and a leading ``-``): no spaces around them, no ``+``, no fraction.

    ``int`` raises ``ValueError`` past 4300 digits (Python's guard against slow parsing); such
    a value is far outside any bounds, so it is refused like one, not left to crash the request.
    """
    if not _INTEGER.fullmatch(value):
        errors.add(path, f"{key} must be a base-10 integer, or empty for a random result.")
        return None
    try:
        number: int | None = int(value)
    except ValueError:
        number = None
    if number is None or not bounds.min <= number <= bounds.max:
        errors.add(path, f"{key} must be between {bounds.min} and {bounds.max}.")
        return None
    return str(number)


def _item_strings(raw: dict[str, Any], path: str, errors: _Errors) -> tuple[dict[str, str | None], bool]:
    """The item's string fields, and whether every key is known and typed right, and the url
    present. ``kind`` and ``mimeType`` may be left out (the file has them), not sent empty."""
    ok = True
    for key in raw:
        if key not in REFERENCE_ITEM_KEYS:
            errors.add(f"{path}.{key}", f"Unknown reference field; allowed: {', '.join(REFERENCE_ITEM_KEYS)}.")
            ok = False
    strings: dict[str, str | None] = {}
    for key in ("url", "kind", "mimeType", "name", "durationToken"):
        value = raw.get(key)
        if value is not None and not isinstance(value, str):
            errors.add(f"{path}.{key}", f"{key} must be a string.")
            ok = False
        strings[key] = value if isinstance(value, str) else None
    if raw.get("url") is None or raw.get("url") == "":
        errors.add(f"{path}.url", "url is required.")
        ok = False
    for key in ("kind", "mimeType"):
        if raw.get(key) == "":
            errors.add(f"{path}.{key}", f"{key} must not be empty; leave it out to use the file's own.")
            ok = False
    return strings, ok


def _check_reference_item(rules: ReferenceRules, raw: Any, path: str, errors: _Errors) -> ReferenceItem | None:
    if not isinstance(raw, dict):
        errors.add(path, "Each reference item must be an object with a url (and optionally kind, name and "
                         "mimeType, which default to the file's own).")
        return None
    strings, ok = _item_strings(raw, path, errors)
    kind, mime = strings["kind"], strings["mimeType"]
    if kind and kind not in rules.kinds:
        errors.add(f"{path}.kind", f"This model accepts reference kinds: {', '.join(rules.kinds)}.")
        ok = False
    limit = rules.limit_for(kind) if kind else None
    if limit is not None and mime and mime not in limit.mime_types:
        errors.add(f"{path}.mimeType", f"A {kind} reference must be one of: {', '.join(limit.mime_types)}.")
        ok = False
    accepted = [m for one in rules.limits if one.kind in rules.kinds for m in one.mime_types]
    if not kind and mime and mime not in accepted:
        errors.add(f"{path}.mimeType", f"This model accepts reference types: {', '.join(accepted)}.")
        ok = False
    if not ok or not strings["url"]:
        return None
    return ReferenceItem(strings["url"], kind or None, mime or None, strings["name"], strings["durationToken"])


def _check_references(model: ModelSpec, raw: Any, errors: _Errors) -> tuple[ReferenceItem, ...]:
    path = f"params.{REFERENCES_KEY}"
    rules = model.references
    if rules is None:
        errors.add(path, f"{model.id} takes no reference files.")
        return ()
    if not isinstance(raw, list):
        errors.add(path, f"{REFERENCES_KEY} must be an array.")
        return ()
    if len(raw) > rules.max_files:
        errors.add(path, f"{model.id} takes at most {rules.max_files} reference file(s); got {len(raw)}.")
        return ()
    items = [_check_reference_item(rules, item, f"{path}[{i}]", errors) for i, item in enumerate(raw)]
    return tuple(item for item in items if item is not None)


def _check_params(
    model: ModelSpec, raw: Any, errors: _Errors
) -> tuple[dict[str, str], tuple[ReferenceItem, ...]]:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        errors.add("params", "params must be an object.")
        return {}, ()
    allowed = [p.key for p in model.params] + ([REFERENCES_KEY] if model.references else [])
    for key in raw:
        if key != REFERENCES_KEY and model.param(key) is None:
            listing = ", ".join(allowed) if allowed else "none"
            errors.add(f"params.{key}", f"Unknown parameter for {model.id}; allowed: {listing}.")
    references = _check_references(model, raw[REFERENCES_KEY], errors) if REFERENCES_KEY in raw else ()
    params: dict[str, str] = {}
    for spec in model.params:
        value = _check_value(spec, raw[spec.key], f"params.{spec.key}", errors) if spec.key in raw else None
        if value is None and (spec.key not in raw or raw[spec.key] == ""):
            value = spec.default
        if value is not None:
            params[spec.key] = value
        elif spec.required and spec.key not in raw:
            errors.add(f"params.{spec.key}", f"{spec.key} is required.")
    return params, references


def _check_priority(raw: Any, errors: _Errors) -> str:
    if raw is None:
        return "normal"
    if raw not in PRIORITIES:
        errors.add("priority", f"priority must be one of: {', '.join(PRIORITIES)}.")
        return "normal"
    return str(raw)


def _check_webhook_url(raw: Any, errors: _Errors) -> str | None:
    if raw is None:
        return None
    wrong = webhook_urls.problem(raw)
    if wrong:
        errors.add("webhook_url", wrong)
        return None
    return str(raw)


def _check_nul(body: dict[str, Any], errors: _Errors) -> None:
    """NUL (U+0000): PostgreSQL cannot store it, so it is refused on both databases; reported
    for each field not already refused (or inside one that is)."""
    reported = {e.field for e in errors.items}
    for path in unstorable_fields(body):
        if not any(path == r or path.startswith((f"{r}.", f"{r}[")) for r in reported):
            errors.add(path, "Contains U+0000, which cannot be stored.")


def validate_task_request(body: Any, catalog: Catalog, *, max_prompt_chars: int) -> TaskRequest:
    """Return the normalized request, or raise ``ValidationFailed`` naming every bad field."""
    errors = _Errors()
    if not isinstance(body, dict):
        raise ValidationFailed("The request body must be a JSON object.", [FieldError("body", "Expected an object.")])
    broken = unstorable_fields(body, nul=False)
    if broken:  # alone: the other checks would quote the broken text in their messages
        raise ValidationFailed(details=[FieldError(f, "Not valid Unicode text (lone surrogate).") for f in broken])
    for key in body:
        if key not in TOP_LEVEL_KEYS:
            errors.add(key, f"Unknown field; allowed: {', '.join(TOP_LEVEL_KEYS)}.")
    model_id = body.get("model")
    model = catalog.get(model_id) if isinstance(model_id, str) else None
    if model_id is None:
        errors.add("model", "The model is required.")
    elif model is None:
        errors.add("model", f"Unknown model {str(model_id)[:100]!r}; known: {', '.join(catalog.ids)}.")
    limit = (model.prompt_max_chars if model else None) or max_prompt_chars
    prompt = _check_prompt(body.get("prompt"), limit, errors)
    client_request_id = _check_client_request_id(body.get("client_request_id"), errors)
    webhook_url = _check_webhook_url(body.get("webhook_url"), errors)
    priority = _check_priority(body.get("priority"), errors)
    params: dict[str, str] = {}
    references: tuple[ReferenceItem, ...] = ()
    if model is not None:
        params, references = _check_params(model, body.get("params"), errors)
    elif body.get("params") is not None and not isinstance(body.get("params"), dict):
        errors.add("params", "params must be an object.")
    _check_nul(body, errors)
    if errors.items or model is None:
        raise ValidationFailed(details=errors.items)
    return TaskRequest(model, prompt, params, references, client_request_id, webhook_url, priority)
