"""``validate_task_request`` against every rule of spec §2 and §4, for each of the four models.

Pure: no database, no HTTP. The expected values come from the hand transcription of the seed
pages in ``test_catalog_spec`` (not from the YAML files under test).
"""

from __future__ import annotations

import unicodedata
from typing import Any

import pytest

from sfumato.catalog import TaskRequest, load_catalog, validate_task_request
from sfumato.errors import ValidationFailed
from tests.test_catalog_spec import IMAGE_MIME_TYPES, SEED_PAGES, seed_defaults, seed_options

CATALOG = load_catalog()
SERVER_CAP = 7000  # deliberately not 5000 nor the 32000 default, so the limit in force is visible
MODEL_IDS = list(SEED_PAGES)
FILE_MODELS = [m for m in MODEL_IDS if SEED_PAGES[m]["max_files"]]
LIMITED_MODELS = [m for m in MODEL_IDS if SEED_PAGES[m]["prompt_max_chars"] == 5000]
PROMPT = "A clean editorial product image on a soft studio background"


def validate(body: Any, *, cap: int = SERVER_CAP) -> TaskRequest:
    return validate_task_request(body, CATALOG, max_prompt_chars=cap)


def refused(body: Any, *, cap: int = SERVER_CAP) -> dict[str, str]:
    """The ``{field: message}`` of a refused request; each field is reported once."""
    with pytest.raises(ValidationFailed) as info:
        validate(body, cap=cap)
    error = info.value
    assert error.code == "validation_failed" and error.status == 422
    fields = [d.field for d in error.details]
    assert fields, "a refusal must name the offending field"
    assert len(fields) == len(set(fields)), f"a field is reported twice: {fields}"
    return {d.field: d.message for d in error.details}


def refused_only(field: str, body: Any, *, cap: int = SERVER_CAP) -> str:
    """Assert that ``field`` is the one offending field; return its message."""
    errors = refused(body, cap=cap)
    assert list(errors) == [field], errors
    return errors[field]


def body(model: str, params: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    request: dict[str, Any] = {"model": model, "prompt": PROMPT, **top}
    if params is not None:
        request["params"] = params
    return request


_DROP = object()  # as a value in ``image(**changes)``: leave the key out


def image(n: int = 0, **changes: Any) -> dict[str, Any]:
    item = {"url": f"https://cdn.example.com/reference-{n}.png", "kind": "image",
            "name": f"reference-{n}.png", "mimeType": "image/png"}
    item.update(changes)
    return {k: v for k, v in item.items() if v is not _DROP}


# --- params: options, defaults, strings only -----------------------------------------------------

SELECT_ROWS = [(m, key, options) for m in MODEL_IDS for key, options in seed_options(m).items()]
ACCEPTED = [(m, key, option) for m, key, options in SELECT_ROWS for option in options]
ALL_OPTIONS = {option for _, _, options in SELECT_ROWS for option in options}
COMMON_BAD = {
    "", " ", "default", "auto", "low", "MEDIUM", "Medium", " medium", "medium ", "1:1 ", "1x1", "1/1", "1:2",
    "16:10", "21:9", "SQUARE_HD", "square-hd", "webp", "jpg", "PNG", "False", "TRUE", "0", "1", "yes", "null",
}
NOT_OPTIONS = [
    (m, key, value) for m, key, options in SELECT_ROWS for value in sorted((COMMON_BAD | ALL_OPTIONS) - set(options))
]


@pytest.mark.parametrize("model", MODEL_IDS)
@pytest.mark.parametrize("params", [None, {}], ids=["params-omitted", "params-empty"])
def test_defaults_are_applied_when_omitted(model: str, params: dict[str, Any] | None) -> None:
    request = validate(body(model, params))
    assert request.model.id == model
    assert request.prompt == PROMPT
    assert request.params == seed_defaults(model)
    assert request.stored_params() == seed_defaults(model)
    assert request.references == ()
    assert request.client_request_id is None


def test_defaults_are_the_documented_ones() -> None:
    """Spelled out once, so a wrong transcription in ``SEED_PAGES`` cannot hide a wrong default."""
    assert {m: validate(body(m)).stored_params() for m in MODEL_IDS} == {
        "gpt-image-1-5": {"quality": "medium", "aspect_ratio": "1:1"},
        "qwen-image": {"image_size": "square_hd", "output_format": "png"},
        "google-imagen4": {"aspect_ratio": "1:1"},
        "grok-imagine": {"aspect_ratio": "1:1", "enable_pro": "false"},
    }


@pytest.mark.parametrize(("model", "key", "option"), ACCEPTED)
def test_each_option_is_accepted(model: str, key: str, option: str) -> None:
    request = validate(body(model, {key: option}))
    assert request.stored_params() == {**seed_defaults(model), key: option}


@pytest.mark.parametrize(("model", "key", "value"), NOT_OPTIONS)
def test_a_value_that_is_not_an_option_is_refused(model: str, key: str, value: str) -> None:
    message = refused_only(f"params.{key}", body(model, {key: value}))
    assert all(option in message for option in seed_options(model)[key])  # the message lists the options


@pytest.mark.parametrize("model", MODEL_IDS)
def test_all_params_set_together(model: str) -> None:
    chosen = {key: options[-1] for key, options in seed_options(model).items()}
    assert validate(body(model, chosen)).stored_params() == {**seed_defaults(model), **chosen}


@pytest.mark.parametrize(("model", "key"), [(m, k) for m, k, _ in SELECT_ROWS])
@pytest.mark.parametrize("value", [True, False, 1, 0, 1.5, None, ["1:1"], {"value": "1:1"}],
                         ids=["true", "false", "1", "0", "1.5", "null", "list", "object"])
def test_select_values_must_be_strings(model: str, key: str, value: Any) -> None:
    message = refused_only(f"params.{key}", body(model, {key: value}))
    assert "string" in message


@pytest.mark.parametrize("value", [False, True])
def test_enable_pro_as_a_json_boolean_says_to_send_the_string(value: bool) -> None:
    message = refused_only("params.enable_pro", body("grok-imagine", {"enable_pro": value}))
    assert f'"{str(value).lower()}"' in message  # e.g. send it as the string "false"


UNKNOWN_KEYS = ["size", "n", "Quality", "ASPECT_RATIO", "aspect-ratio", "aspectRatio", "reference_media_items",
                "referencemediaitems", "", "negative_prompt", "seed", "enable_pro", "image_size", "quality"]
UNKNOWN_KEY_CASES = [(m, key) for m in MODEL_IDS for key in UNKNOWN_KEYS
                     if key not in [row[0] for row in SEED_PAGES[m]["params"]]]


@pytest.mark.parametrize(("model", "key"), UNKNOWN_KEY_CASES)
def test_unknown_param_key_is_refused(model: str, key: str) -> None:
    message = refused_only(f"params.{key}", body(model, {key: "1:1"}))
    assert all(row[0] in message for row in SEED_PAGES[model]["params"])  # the message lists what is allowed


@pytest.mark.parametrize("model", MODEL_IDS)
@pytest.mark.parametrize("value", [[], "aspect_ratio=1:1", 5, True], ids=["list", "string", "int", "bool"])
def test_params_must_be_an_object(model: str, value: Any) -> None:
    refused_only("params", body(model, value))


@pytest.mark.parametrize("model", MODEL_IDS)
def test_params_null_means_no_params(model: str) -> None:
    assert validate({**body(model), "params": None}).stored_params() == seed_defaults(model)


# --- the page examples, verbatim ------------------------------------------------------------------

PAGE_EXAMPLE_PARAMS = {
    "gpt-image-1-5": {"quality": "medium", "aspect_ratio": "1:1"},
    "qwen-image": {"image_size": "square_hd", "output_format": "png"},
    "google-imagen4": {"aspect_ratio": "1:1", "negative_prompt": "สิ่งที่ไม่ต้องการแบบไม่บังคับ"},
    "grok-imagine": {"aspect_ratio": "1:1", "enable_pro": "false"},
}
PAGE_REFERENCE = {"url": "https://cdn.example.com/reference-image.png", "kind": "image",
                  "name": "reference-image.png", "mimeType": "image/png"}


@pytest.mark.parametrize("model", MODEL_IDS)
def test_the_minimal_request_of_each_page_is_accepted(model: str) -> None:
    request = validate(body(model, PAGE_EXAMPLE_PARAMS[model]))
    assert request.stored_params() == PAGE_EXAMPLE_PARAMS[model]


@pytest.mark.parametrize("model", FILE_MODELS)
def test_the_reference_request_of_each_page_is_accepted(model: str) -> None:
    params = {**PAGE_EXAMPLE_PARAMS[model], "referenceMediaItems": [PAGE_REFERENCE]}
    request = validate(body(model, params))
    assert request.stored_params() == params
    assert [ref.url for ref in request.references] == [PAGE_REFERENCE["url"]]


# --- prompt ---------------------------------------------------------------------------------------

MISSING = object()


@pytest.mark.parametrize("model", MODEL_IDS)
@pytest.mark.parametrize(
    "prompt",
    [MISSING, None, 5, True, ["a fox"], {"text": "a fox"}, "", " ", "\n\t  \r\n", "\u3000\u00a0"],
    ids=["missing", "null", "int", "bool", "list", "object", "empty", "space", "whitespace", "unicode-spaces"],
)
def test_prompt_missing_not_a_string_or_blank_is_refused(model: str, prompt: Any) -> None:
    request = body(model)
    if prompt is MISSING:
        del request["prompt"]
    else:
        request["prompt"] = prompt
    refused_only("prompt", request)


def thai_prompt(code_points: int) -> str:
    """Thai with a combining vowel: "กั" is 2 code points but 1 user-perceived character."""
    text = ("กั" * (code_points // 2 + 1))[:code_points]
    assert len(text) == code_points
    return text


def graphemes(text: str) -> int:
    """Enough for Thai base + combining mark: count the code points that are not marks."""
    return sum(1 for ch in text if not unicodedata.category(ch).startswith("M"))


@pytest.mark.parametrize("model", LIMITED_MODELS)
@pytest.mark.parametrize(
    "prompt",
    [lambda: "a" * 5000, lambda: thai_prompt(5000), lambda: "😀" * 5000, lambda: "é" * 5000],
    ids=["ascii", "thai-combining", "emoji-non-bmp", "nfc-accented"],
)
def test_prompt_of_exactly_5000_code_points_is_accepted(model: str, prompt: Any) -> None:
    text = prompt()
    assert len(text) == 5000
    request = validate(body(model, prompt=text))
    assert request.prompt == text  # kept verbatim


@pytest.mark.parametrize("model", LIMITED_MODELS)
@pytest.mark.parametrize(
    "prompt",
    [lambda: "a" * 5001, lambda: thai_prompt(5001), lambda: "😀" * 5001, lambda: "e\u0301" * 2501],
    ids=["ascii", "thai-combining", "emoji-non-bmp", "nfd-accented"],
)
def test_prompt_of_5001_code_points_or_more_is_refused(model: str, prompt: Any) -> None:
    text = prompt()
    assert len(text) > 5000
    message = refused_only("prompt", body(model, prompt=text))
    assert "5000" in message


@pytest.mark.parametrize("model", LIMITED_MODELS)
def test_prompt_limit_counts_code_points_not_graphemes(model: str) -> None:
    fits = thai_prompt(5000)  # 5000 code points, 2500 graphemes
    assert graphemes(fits) == 2500
    assert validate(body(model, prompt=fits)).prompt == fits
    over = "กั" * 2501  # 5002 code points but only 2501 graphemes: a grapheme count would let it in
    assert len(over) == 5002 and graphemes(over) == 2501
    refused_only("prompt", body(model, prompt=over))


@pytest.mark.parametrize("model", LIMITED_MODELS)
def test_prompt_limit_is_the_models_even_when_the_server_cap_is_larger(model: str) -> None:
    refused_only("prompt", body(model, prompt="a" * 5001), cap=32000)


def test_gpt_image_has_no_documented_limit_so_the_server_cap_applies() -> None:
    assert validate(body("gpt-image-1-5", prompt="a" * 5001)).prompt == "a" * 5001
    assert len(validate(body("gpt-image-1-5", prompt=thai_prompt(SERVER_CAP))).prompt) == SERVER_CAP
    message = refused_only("prompt", body("gpt-image-1-5", prompt=thai_prompt(SERVER_CAP + 1)))
    assert str(SERVER_CAP) in message


def test_gpt_image_default_server_cap_is_the_upstream_32000() -> None:
    from sfumato.settings import Settings

    cap = Settings.model_fields["max_prompt_chars"].default
    assert cap == 32000  # spec §8: the upstream gpt-image-1.5 takes 1 to 32000 characters
    assert validate(body("gpt-image-1-5", prompt="a" * 32000), cap=cap)
    refused_only("prompt", body("gpt-image-1-5", prompt="a" * 32001), cap=cap)


# --- google-imagen4: negative_prompt and seed ------------------------------------------------------

IMAGEN_DEFAULTS = {"aspect_ratio": "1:1"}


@pytest.mark.parametrize("seed", [MISSING, ""], ids=["omitted", "empty"])
def test_seed_omitted_or_empty_means_random(seed: Any) -> None:
    params = {} if seed is MISSING else {"seed": seed}
    assert validate(body("google-imagen4", params)).stored_params() == IMAGEN_DEFAULTS


@pytest.mark.parametrize(
    ("seed", "canonical"),
    [("0", "0"), ("7", "7"), ("007", "7"), ("0000", "0"), ("42", "42"), ("123456789", "123456789"),
     ("4294967295", "4294967295"), ("04294967295", "4294967295")],
)
def test_seed_integer_is_accepted_and_canonicalised(seed: str, canonical: str) -> None:
    request = validate(body("google-imagen4", {"seed": seed}))
    assert request.stored_params() == {**IMAGEN_DEFAULTS, "seed": canonical}


@pytest.mark.parametrize(
    "seed",
    ["1.5", "abc", "๑๒", "١٢", "\uff11\uff12", " ", "1e3", "0x10", "1_000", "1,000", "12abc", "seed",
     "ค่า seed แบบไม่บังคับ",  # the placeholder of the page's example: a placeholder, not a seed
     "-1", "-4294967295", "4294967296", "18446744073709551615", "99999999999999999999999999", "9" * 5000],
    ids=lambda s: s if len(s) < 30 else f"{len(s)}-digits",
)
def test_seed_that_is_not_an_unsigned_32_bit_base_10_integer_is_refused(seed: str) -> None:
    message = refused_only("params.seed", body("google-imagen4", {"seed": seed}))
    assert "integer" in message or "between" in message


@pytest.mark.parametrize("seed", [42, 0, True, 1.5, None])
def test_seed_must_be_a_string(seed: Any) -> None:
    refused_only("params.seed", body("google-imagen4", {"seed": seed}))


@pytest.mark.parametrize("text", ["blurry, watermark", "สิ่งที่ไม่ต้องการ", "  spaced  ", "a" * 5000])
def test_negative_prompt_is_kept_verbatim(text: str) -> None:
    request = validate(body("google-imagen4", {"negative_prompt": text}))
    assert request.stored_params() == {**IMAGEN_DEFAULTS, "negative_prompt": text}


def test_negative_prompt_is_optional() -> None:
    assert "negative_prompt" not in validate(body("google-imagen4", {"negative_prompt": ""})).stored_params()
    assert "negative_prompt" not in validate(body("google-imagen4")).stored_params()


@pytest.mark.parametrize("value", [5, False, ["x"], None])
def test_negative_prompt_must_be_a_string(value: Any) -> None:
    refused_only("params.negative_prompt", body("google-imagen4", {"negative_prompt": value}))


def test_all_imagen_params_together() -> None:
    params = {"aspect_ratio": "9:16", "negative_prompt": "text", "seed": "0042"}
    assert validate(body("google-imagen4", params)).stored_params() == {**params, "seed": "42"}


# --- referenceMediaItems ---------------------------------------------------------------------------

REFS = "params.referenceMediaItems"


@pytest.mark.parametrize("items", [[PAGE_REFERENCE], [], None], ids=["one-item", "empty-list", "null"])
def test_google_imagen4_takes_no_references(items: Any) -> None:
    message = refused_only(REFS, body("google-imagen4", {"referenceMediaItems": items}))
    assert "google-imagen4" in message


@pytest.mark.parametrize("model", FILE_MODELS)
def test_exactly_the_maximum_number_of_references_is_accepted(model: str) -> None:
    most = SEED_PAGES[model]["max_files"]
    items = [image(n) for n in range(most)]
    request = validate(body(model, {"referenceMediaItems": items}))
    assert len(request.references) == most
    assert request.stored_params() == {**seed_defaults(model), "referenceMediaItems": items}


@pytest.mark.parametrize("model", FILE_MODELS)
def test_one_reference_more_than_the_maximum_is_refused(model: str) -> None:
    most = SEED_PAGES[model]["max_files"]
    assert most + 1 == {"gpt-image-1-5": 17, "qwen-image": 2, "grok-imagine": 2}[model]
    message = refused_only(REFS, body(model, {"referenceMediaItems": [image(n) for n in range(most + 1)]}))
    assert str(most) in message


@pytest.mark.parametrize("model", FILE_MODELS)
def test_no_references_is_fine(model: str) -> None:
    assert validate(body(model, {"referenceMediaItems": []})).stored_params() == seed_defaults(model)


@pytest.mark.parametrize("model", FILE_MODELS)
@pytest.mark.parametrize("value", [PAGE_REFERENCE, "https://cdn.example.com/a.png", None, 3],
                         ids=["object", "string", "null", "int"])
def test_reference_items_must_be_an_array(model: str, value: Any) -> None:
    refused_only(REFS, body(model, {"referenceMediaItems": value}))


@pytest.mark.parametrize("model", FILE_MODELS)
@pytest.mark.parametrize("mime", IMAGE_MIME_TYPES)
def test_each_image_mime_type_is_accepted(model: str, mime: str) -> None:
    request = validate(body(model, {"referenceMediaItems": [image(0, mimeType=mime)]}))
    assert [ref.mime_type for ref in request.references] == [mime]


BAD_ITEMS = [
    ("kind", {"kind": "video"}), ("kind", {"kind": "audio"}), ("kind", {"kind": "Image"}),
    ("kind", {"kind": "document"}), ("kind", {"kind": ""}), ("kind", {"kind": 1}),
    ("mimeType", {"mimeType": "image/gif"}), ("mimeType", {"mimeType": "image/jpg"}),
    ("mimeType", {"mimeType": "image/heic"}), ("mimeType", {"mimeType": "image/svg+xml"}),
    ("mimeType", {"mimeType": "IMAGE/PNG"}), ("mimeType", {"mimeType": "video/mp4"}),
    ("mimeType", {"mimeType": "application/pdf"}), ("mimeType", {"mimeType": ""}),
    ("mimeType", {"mimeType": ["image/png"]}),
    ("url", {"url": _DROP}), ("url", {"url": ""}), ("url", {"url": None}), ("url", {"url": 42}),
    ("name", {"name": 42}),
    ("file_id", {"file_id": "file_123"}), ("image_url", {"image_url": "https://x/y.png"}),
    ("mime_type", {"mime_type": "image/png"}), ("type", {"type": "image"}),
]


def _reference_case(model: str, changes: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """Put the bad item last: at index 1 where two items fit, else at index 0."""
    items = [image(0), image(1, **changes)] if SEED_PAGES[model]["max_files"] >= 2 else [image(0, **changes)]
    return items, len(items) - 1


@pytest.mark.parametrize("model", FILE_MODELS)
@pytest.mark.parametrize(("field", "changes"), BAD_ITEMS, ids=[f"{f}-{i}" for i, (f, _) in enumerate(BAD_ITEMS)])
def test_a_bad_reference_item_names_its_index_and_field(model: str, field: str, changes: dict[str, Any]) -> None:
    items, index = _reference_case(model, changes)
    refused_only(f"{REFS}[{index}].{field}", body(model, {"referenceMediaItems": items}))


@pytest.mark.parametrize("model", FILE_MODELS)
@pytest.mark.parametrize("item", ["https://cdn.example.com/a.png", None, 7, ["https://cdn.example.com/a.png"]],
                         ids=["string", "null", "int", "list"])
def test_a_reference_item_that_is_not_an_object_names_its_index(model: str, item: Any) -> None:
    items = [image(0), item] if SEED_PAGES[model]["max_files"] >= 2 else [item]
    refused_only(f"{REFS}[{len(items) - 1}]", body(model, {"referenceMediaItems": items}))


def test_every_bad_reference_item_is_reported() -> None:
    items = [image(0, kind="video"), image(1), image(2, mimeType="image/gif"), image(3, url=_DROP, extra=1)]
    errors = refused(body("gpt-image-1-5", {"referenceMediaItems": items}))
    assert set(errors) == {f"{REFS}[0].kind", f"{REFS}[2].mimeType", f"{REFS}[3].url", f"{REFS}[3].extra"}


@pytest.mark.parametrize("model", FILE_MODELS)
def test_an_output_can_be_passed_back_as_a_reference(model: str) -> None:
    """§3: outputs use the reference shape plus width, height and bytes."""
    output = {"url": "https://sfumato.test/media/out_1.png?sig=abc", "kind": "image", "name": "out_1.png",
              "mimeType": "image/png", "width": 1024, "height": 1024, "bytes": 123456}
    request = validate(body(model, {"referenceMediaItems": [output]}))
    [ref] = request.references
    assert (ref.url, ref.kind, ref.mime_type, ref.name) == (output["url"], "image", "image/png", "out_1.png")


# --- model, top-level keys, client_request_id --------------------------------------------------------


@pytest.mark.parametrize(
    "model",
    ["gpt-image-1.5", "GPT-IMAGE-1-5", "qwen_image", "imagen4", "dall-e-3", "", " qwen-image", 5, ["qwen-image"]],
)
def test_unknown_model_is_refused_listing_the_known_ids(model: Any) -> None:
    message = refused_only("model", {"model": model, "prompt": PROMPT})
    assert all(model_id in message for model_id in MODEL_IDS)


@pytest.mark.parametrize("model", [MISSING, None], ids=["missing", "null"])
def test_model_is_required(model: Any) -> None:
    request: dict[str, Any] = {"prompt": PROMPT}
    if model is not MISSING:
        request["model"] = model
    refused_only("model", request)


@pytest.mark.parametrize(
    "key", ["size", "n", "images", "Model", "aspect_ratio", "referenceMediaItems", "seed", "clientRequestId", ""]
)
def test_unknown_top_level_key_is_refused(key: str) -> None:
    errors = refused({**body("qwen-image"), key: "1:1"})
    assert list(errors) == [key]
    assert "client_request_id" in errors[key]  # lists the allowed keys


@pytest.mark.parametrize("value", [[], "qwen-image", None, 5], ids=["list", "string", "null", "int"])
def test_body_must_be_an_object(value: Any) -> None:
    refused_only("body", value)


@pytest.mark.parametrize(
    "value",
    ["a", "order-2026-05-11-0001", "x" * 255, "ก" * 255, "คำขอ/1 :: ok", "a b", "😀" * 255],
    ids=["one-char", "typical", "255-ascii", "255-thai", "thai", "inner-space", "255-emoji"],
)
def test_client_request_id_is_accepted(value: str) -> None:
    assert validate(body("qwen-image", client_request_id=value)).client_request_id == value


@pytest.mark.parametrize(
    "value",
    ["", "x" * 256, "ก" * 256, "abc\n", "a\tb", "\x00", "id\x1b[31m", "a\x7f", "a\x85b", "a\u200bb", "\u202eabc",
     5, True, ["id"], {"id": 1}],
    ids=["empty", "256-ascii", "256-thai", "newline", "tab", "nul", "escape", "del", "c1-nel", "zero-width",
         "bidi-override", "int", "bool", "list", "object"],
)
def test_bad_client_request_id_is_refused(value: Any) -> None:
    refused_only("client_request_id", body("qwen-image", client_request_id=value))


def test_client_request_id_null_means_none() -> None:
    assert validate(body("qwen-image", client_request_id=None)).client_request_id is None


# --- every offending field in one error ----------------------------------------------------------------


def test_four_problems_give_exactly_four_details() -> None:
    request = {"model": "qwen-image", "prompt": "   ", "client_request_id": "",
               "params": {"image_size": "huge", "size": "1024x1024"}}
    errors = refused(request)
    assert set(errors) == {"prompt", "params.image_size", "params.size", "client_request_id"}
    assert len(errors) == 4


@pytest.mark.parametrize(
    ("model", "params", "fields"),
    [
        ("gpt-image-1-5", {"quality": "low", "aspect_ratio": "16:9", "n": "2",
                           "referenceMediaItems": [image(0), image(1, kind="video", foo="bar")]},
         {"params.quality", "params.aspect_ratio", "params.n", f"{REFS}[1].kind", f"{REFS}[1].foo"}),
        ("qwen-image", {"image_size": "square_HD", "output_format": "webp",
                        "referenceMediaItems": [image(0), image(1)]},
         {"params.image_size", "params.output_format", REFS}),
        ("google-imagen4", {"aspect_ratio": "2:3", "seed": "-1", "negative_prompt": 0,
                            "referenceMediaItems": [image(0)]},
         {"params.aspect_ratio", "params.seed", "params.negative_prompt", REFS}),
        ("grok-imagine", {"aspect_ratio": "4:3", "enable_pro": False, "quality": "high",
                          "referenceMediaItems": [image(0, mimeType="image/gif", url="")]},
         {"params.aspect_ratio", "params.enable_pro", "params.quality", f"{REFS}[0].mimeType", f"{REFS}[0].url"}),
    ],
    ids=MODEL_IDS,
)
def test_every_bad_field_of_each_model_is_reported_once(model: str, params: dict[str, Any], fields: set[str]) -> None:
    request = {"model": model, "prompt": "", "params": params, "client_request_id": "x" * 300, "extra": 1}
    errors = refused(request)
    assert set(errors) == fields | {"prompt", "client_request_id", "extra"}


def test_an_unknown_model_still_reports_the_other_top_level_problems() -> None:
    errors = refused({"model": "dall-e-3", "prompt": 7, "client_request_id": "a\nb", "size": "1024x1024"})
    assert set(errors) == {"model", "prompt", "client_request_id", "size"}


# --- text that cannot be stored ---------------------------------------------------------------------------

LONE = "\ud800"  # what JSON's "\\ud800" escape parses into: a str that UTF-8 cannot encode


@pytest.mark.parametrize(
    ("field", "request_body"),
    [
        ("prompt", body("qwen-image", prompt=f"a {LONE} fox")),
        ("client_request_id", body("qwen-image", client_request_id=f"id-{LONE}")),
        ("params.negative_prompt", body("google-imagen4", {"negative_prompt": LONE})),
        ("params.aspect_ratio", body("grok-imagine", {"aspect_ratio": LONE})),
        (f"{REFS}[0].name", body("qwen-image", {"referenceMediaItems": [image(0, name=f"{LONE}.png")]})),
        ("model", {"model": f"qwen-image{LONE}", "prompt": PROMPT}),
        ("\\ud800", {**body("qwen-image"), LONE: 1}),
        ("params.x\\udfff", body("qwen-image", {"x\udfff": "1"})),
    ],
    ids=["prompt", "client_request_id", "text-param", "select-param", "reference-name", "model", "top-level-key",
         "param-key"],
)
def test_a_lone_surrogate_is_refused_naming_its_field(field: str, request_body: dict[str, Any]) -> None:
    with pytest.raises(ValidationFailed) as info:
        validate(request_body)
    assert [d.field for d in info.value.details] == [field]
    for detail in info.value.details:  # the error itself must be sendable as UTF-8 JSON
        (detail.field + detail.message + info.value.message).encode("utf-8")


def test_every_field_with_a_lone_surrogate_is_reported() -> None:
    request_body = body("gpt-image-1-5", {"referenceMediaItems": [image(0), image(1, url=f"https://x/{LONE}")]},
                        prompt=LONE, client_request_id=LONE)
    assert set(refused(request_body)) == {"prompt", "client_request_id", f"{REFS}[1].url"}


def test_a_deeply_nested_body_is_refused_without_recursion_error() -> None:
    nested: list[Any] = []
    for _ in range(20000):  # far past Python's recursion limit
        nested = [nested]
    refused_only("params.x", body("qwen-image", {"x": nested}))


# --- price ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "credits"), [("gpt-image-1-5", 4), ("qwen-image", 4), ("google-imagen4", 8),
                                                ("grok-imagine", 4)])
def test_price_is_the_base_credits(model: str, credits: int) -> None:
    assert validate(body(model)).price == credits
    assert SEED_PAGES[model]["base_credits"] == credits


@pytest.mark.parametrize(("model", "key", "option"), ACCEPTED)
def test_fixed_price_does_not_depend_on_the_options(model: str, key: str, option: str) -> None:
    assert validate(body(model, {key: option})).price == SEED_PAGES[model]["base_credits"]


@pytest.mark.parametrize("model", FILE_MODELS)
def test_fixed_price_does_not_depend_on_references(model: str) -> None:
    request = validate(body(model, {"referenceMediaItems": [image(0)]}))
    assert request.price == SEED_PAGES[model]["base_credits"]


INVISIBLE = ["\u200b\u200b", "\u200d", "\u2060\ufeff", "\x01\x02", "\u202e\u200e", "\u3000\u200b", "\t\u200c\n"]


@pytest.mark.parametrize("prompt", INVISIBLE)
@pytest.mark.parametrize("model", MODEL_IDS)
def test_a_prompt_of_only_invisible_or_control_characters_is_refused(model: str, prompt: str) -> None:
    """It would be charged and make an image of nothing asked for (issue 12 §9)."""
    message = refused_only("prompt", body(model, prompt=prompt))
    assert "visible" in message or "empty" in message


@pytest.mark.parametrize("model", MODEL_IDS)
def test_a_prompt_with_invisible_characters_and_text_is_kept_as_sent(model: str) -> None:
    assert validate(body(model, prompt="\u200ba fox\u200d")).prompt == "\u200ba fox\u200d"


SEED_MODELS = [m for m in MODEL_IDS if CATALOG.get(m).param("seed") is not None]


@pytest.mark.parametrize("seed", [" 42", "42 ", "\t42", "+42", "42.0", "4 2", "\u0664\u0662", "0x2a", "1e3"])
@pytest.mark.parametrize("model", SEED_MODELS)
def test_a_seed_is_exactly_base10_digits(model: str, seed: str) -> None:
    assert "base-10" in refused_only("params.seed", body(model, {"seed": seed}))


@pytest.mark.parametrize("model", SEED_MODELS)
def test_a_canonical_seed_is_accepted(model: str) -> None:
    assert validate(body(model, {"seed": "42"})).params["seed"] == "42"
