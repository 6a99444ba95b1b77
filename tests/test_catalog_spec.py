"""The catalog data: every fact of the four Thai model pages lives in ``models/*.yaml``.

``SEED_PAGES`` below is transcribed by hand from ``shared/seeds/*.th.txt`` (spec §4), never read
from the YAML files, so a wrong or missing fact in a model file fails here. The second half
proves the loader's contract for operators: "adding a model means adding a file", and a
malformed file stops the server instead of serving a wrong contract.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from sfumato.catalog import load_catalog, validate_task_request
from sfumato.catalog.loader import CatalogError
from sfumato.catalog.spec import ModelSpec

TEN_MB = 10 * 1024 * 1024
IMAGE_MIME_TYPES = ("image/jpeg", "image/png", "image/webp")

# One entry per seed page. Params: (key, type, default, options, Thai description column).
SEED_PAGES: dict[str, dict[str, Any]] = {
    "gpt-image-1-5": {
        "name": "GPT Image 1.5",
        "inputs": ("text", "file"),
        "files_api": "required_for_reference",  # จำเป็นสำหรับโหมด reference
        "base_credits": 4,
        "prompt_max_chars": None,  # ยังไม่มีขีดจำกัดพรอมต์ในเอกสาร
        "params": [
            ("quality", "select", "medium", ("medium", "high"), "คุณภาพ"),
            ("aspect_ratio", "select", "1:1", ("1:1", "2:3", "3:2"), "อัตราส่วนภาพ"),
        ],
        "max_files": 16,
        "reference_rule_th": "รูปอ้างอิง: อัปโหลดไฟล์รูปภาพได้สูงสุด 16 ไฟล์สำหรับโปรเจกต์รูปภาพ",
    },
    "qwen-image": {
        "name": "Qwen Image",
        "inputs": ("text", "file"),
        "files_api": "required_for_reference",
        "base_credits": 4,
        "prompt_max_chars": 5000,
        "params": [
            ("image_size", "select", "square_hd",
             ("square", "square_hd", "portrait_4_3", "portrait_16_9", "landscape_4_3", "landscape_16_9"),
             "ขนาดรูปภาพ"),
            ("output_format", "select", "png", ("png", "jpeg"), "รูปแบบเอาต์พุต"),
        ],
        "max_files": 1,
        "reference_rule_th": "ภาพอ้างอิง: อัปโหลดไฟล์รูปภาพได้สูงสุด 1 ไฟล์สำหรับโปรเจกต์รูปภาพ",
    },
    "google-imagen4": {
        "name": "Google Imagen4",
        "inputs": ("text",),
        "files_api": "not_required",  # ไม่จำเป็นสำหรับ request ขั้นต่ำ
        "base_credits": 8,
        "prompt_max_chars": 5000,
        "params": [
            ("aspect_ratio", "select", "1:1", ("1:1", "16:9", "9:16", "3:4", "4:3"), "อัตราส่วนภาพ"),
            ("negative_prompt", "text", None, None, "พรอมป์เชิงลบ"),
            ("seed", "text", None, None,
             "เว้นว่างไว้เพื่อสร้างผลลัพธ์แบบสุ่มใหม่ทุกครั้ง การใช้เลขจำนวนเต็มเดิมซ้ำจะช่วยให้ทำซ้ำหรือปรับละเอียด"
             "จากผลลัพธ์ก่อนหน้าได้ง่ายขึ้น ผลลัพธ์จะใกล้เคียงขึ้นเมื่อพรอมป์และการตั้งค่าหลักอื่นยังคล้ายเดิมเท่านั้น "
             "และไม่รับประกันว่าจะตรงกันแบบ 1:1"),
        ],
        "max_files": None,
        "reference_rule_th": None,
    },
    "grok-imagine": {
        "name": "Grok Imagine",
        "inputs": ("text", "file"),
        "files_api": "required_for_reference",
        "base_credits": 4,
        "prompt_max_chars": 5000,
        "params": [
            ("aspect_ratio", "select", "1:1", ("1:1", "2:3", "3:2", "16:9", "9:16"), "อัตราส่วนภาพ"),
            ("enable_pro", "select", "false", ("false", "true"),
             "นี่คือสวิตช์คุณภาพของ Grok Imagine สำหรับข้อความเป็นรูปภาพเท่านั้น Standard ถูกกว่า ส่วน Quality "
             "เน้นรายละเอียดมากขึ้น; เส้นทางแก้ไขภาพปัจจุบันไม่ได้ใช้ค่านี้"),
        ],
        "max_files": 1,
        "reference_rule_th": "รูปอ้างอิง: อัปโหลดไฟล์รูปภาพได้สูงสุด 1 ไฟล์สำหรับโปรเจกต์รูปภาพ",
    },
}
MODEL_IDS = list(SEED_PAGES)
PARAM_ROWS = [(model_id, row) for model_id, page in SEED_PAGES.items() for row in page["params"]]


def seed_defaults(model_id: str) -> dict[str, str]:
    """The normalized params of a request that sets nothing: each documented default."""
    return {key: default for key, _, default, _, _ in SEED_PAGES[model_id]["params"] if default is not None}


def seed_options(model_id: str) -> dict[str, tuple[str, ...]]:
    return {key: options for key, kind, _, options, _ in SEED_PAGES[model_id]["params"] if kind == "select"}


CATALOG = load_catalog()


def _squash(text: str | None) -> str | None:
    """YAML folded scalars turn line breaks into spaces; compare text with runs of spaces as one."""
    return re.sub(r"\s+", " ", text).strip() if text is not None else None


def _thai(text: dict[str, str] | None) -> str | None:
    return _squash(text.get("th")) if text else None


# --- the built-in catalog holds every fact of the pages ----------------------------------------


def test_the_catalog_is_exactly_the_four_seed_models() -> None:
    assert sorted(CATALOG.ids) == sorted(MODEL_IDS)
    assert len(CATALOG) == 4


@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_model_header_facts(model_id: str) -> None:
    page, spec = SEED_PAGES[model_id], CATALOG.get(model_id)
    assert spec is not None
    assert spec.id == model_id
    assert spec.name == page["name"]
    assert spec.capability == "image"  # ความสามารถ: รูปภาพ
    assert spec.billing == "FIXED"
    assert spec.inputs == page["inputs"]
    assert spec.files_api == page["files_api"]
    assert spec.base_credits == page["base_credits"]
    assert spec.prompt_max_chars == page["prompt_max_chars"]
    assert spec.price_modifiers == ()  # FIXED: the price is the base credits, whatever the params
    # Both languages, the Thai one a translation (tests/test_web_pages.py checks its words), not
    # the seed's "use <name> through Public API v1 with model id <id>" line.
    assert "en" in spec.summary and any("\u0e00" <= ch <= "\u0e7f" for ch in spec.summary["th"])
    assert "Public API v1" not in spec.summary["th"]


@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_params_are_the_page_rows_in_page_order(model_id: str) -> None:
    spec = CATALOG.get(model_id)
    assert spec is not None
    assert [p.key for p in spec.params] == [row[0] for row in SEED_PAGES[model_id]["params"]]


@pytest.mark.parametrize(("model_id", "row"), PARAM_ROWS, ids=[f"{m}-{r[0]}" for m, r in PARAM_ROWS])
def test_each_param_row(model_id: str, row: tuple[Any, ...]) -> None:
    key, kind, default, options, thai = row
    param = CATALOG.get(model_id).param(key)  # type: ignore[union-attr]
    assert param is not None
    assert param.type == kind
    assert param.required is False  # every row says จำเป็น: ไม่ใช่
    assert param.default == default
    assert param.options == options
    assert all(isinstance(option, str) for option in param.options or ())  # select values are strings
    described = {_thai(param.label), _thai(param.description)}
    assert _squash(thai) in described, f"{model_id}.{key}: Thai text of the page is missing"
    assert param.label.get("en")


def test_google_imagen4_seed_is_an_unsigned_32_bit_integer_or_empty() -> None:
    seed = CATALOG.get("google-imagen4").param("seed")  # type: ignore[union-attr]
    assert seed is not None and seed.integer is not None
    assert (seed.integer.min, seed.integer.max) == (0, 2**32 - 1)


@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_reference_rules(model_id: str) -> None:
    page, spec = SEED_PAGES[model_id], CATALOG.get(model_id)
    assert spec is not None
    if page["max_files"] is None:
        assert spec.references is None
        assert "file" not in spec.inputs
        return
    rules = spec.references
    assert rules is not None
    assert rules.max_files == page["max_files"]
    assert rules.kinds == ("image",)
    [limit] = rules.limits
    assert limit.kind == "image"
    assert limit.max_bytes == TEN_MB
    assert limit.mime_types == IMAGE_MIME_TYPES
    assert rules.limit_for("image") == limit
    assert rules.limit_for("video") is None
    assert _thai(rules.description) == page["reference_rule_th"]


def test_gpt_image_upstream_accepts_sixteen_images() -> None:
    spec = CATALOG.get("gpt-image-1-5")
    assert spec is not None and spec.upstream is not None
    assert "gpt-image-1.5" in spec.upstream["en"] and "16" in spec.upstream["en"]


# --- output sizes --------------------------------------------------------------------------------

RATIO = {"portrait_4_3": (3, 4), "portrait_16_9": (9, 16), "landscape_4_3": (4, 3), "landscape_16_9": (16, 9),
         "square": (1, 1), "square_hd": (1, 1)}


def _ratio(option: str) -> tuple[int, int]:
    if option in RATIO:
        return RATIO[option]
    width, height = option.split(":")
    return int(width), int(height)


@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_output_sizes_cover_every_option_of_the_size_param(model_id: str) -> None:
    spec = CATALOG.get(model_id)
    assert spec is not None and spec.output.size_param is not None
    options = seed_options(model_id)[spec.output.size_param]
    assert set(spec.output.sizes) == set(options)
    for option in options:
        width, height = spec.output.size_for({spec.output.size_param: option})
        assert width > 0 and height > 0
        want_w, want_h = _ratio(option)
        assert abs((width / height) / (want_w / want_h) - 1) < 0.08, f"{option} drawn as {width}x{height}"


@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_output_size_of_the_defaults_exists(model_id: str) -> None:
    spec = CATALOG.get(model_id)
    assert spec is not None
    assert spec.output.size_for(seed_defaults(model_id))
    assert spec.output.format_for(seed_defaults(model_id)) in ("png", "jpeg", "webp")


def test_qwen_output_format_follows_its_param() -> None:
    spec = CATALOG.get("qwen-image")
    assert spec is not None
    assert spec.output.format_for({"output_format": "jpeg"}) == "jpeg"
    assert spec.output.format_for({"output_format": "png"}) == "png"


# --- operators' model files: loaded from extra_dir, refused when malformed ----------------------

NEW_MODEL: dict[str, Any] = {
    "id": "acme-sketch",
    "name": "Acme Sketch",
    "summary": "A test model that an operator adds with one file.",
    "capability": "image",
    "inputs": ["text", "file"],
    "files_api": "required_for_reference",
    "billing": "FIXED",
    "base_credits": 3,
    "prompt_max_chars": 300,
    "params": [
        {"key": "style", "type": "select", "default": "pencil", "options": ["pencil", "ink"], "label": "Style"},
        {"key": "aspect_ratio", "type": "select", "default": "1:1", "options": ["1:1", "2:1"],
         "label": "Aspect ratio"},
    ],
    "references": {
        "max_files": 2,
        "kinds": ["image"],
        "limits": [{"kind": "image", "max_bytes": 1048576, "mime_types": ["image/png"]}],
    },
    "output": {"size_param": "aspect_ratio", "sizes": {"1:1": [64, 64], "2:1": [128, 64]}, "default_format": "png"},
}


def write_model(directory: Path, document: dict[str, Any], name: str | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name or document.get('id', 'model')}.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def test_a_model_file_in_extra_dir_is_loaded(tmp_path: Path) -> None:
    write_model(tmp_path, NEW_MODEL)
    (tmp_path / "README.txt").write_text("not a model file", encoding="utf-8")
    catalog = load_catalog(tmp_path)
    assert sorted(catalog.ids) == sorted([*MODEL_IDS, "acme-sketch"])
    spec = catalog.get("acme-sketch")
    assert spec is not None
    assert spec.summary == {"en": NEW_MODEL["summary"]}
    assert [(p.key, p.default, p.options) for p in spec.params] == [
        ("style", "pencil", ("pencil", "ink")), ("aspect_ratio", "1:1", ("1:1", "2:1"))]
    request = validate_task_request(
        {"model": "acme-sketch", "prompt": "a cat", "params": {"style": "ink"}}, catalog, max_prompt_chars=32000
    )
    assert request.stored_params() == {"style": "ink", "aspect_ratio": "1:1"}
    assert request.price == 3
    assert load_catalog().get("acme-sketch") is None  # the built-in catalog is untouched


def test_a_model_file_in_extra_dir_replaces_a_builtin_model_of_the_same_id(tmp_path: Path) -> None:
    document = copy.deepcopy(NEW_MODEL)
    document["id"] = "qwen-image"
    write_model(tmp_path, document)
    catalog = load_catalog(tmp_path)
    assert len(catalog) == 4
    assert catalog.get("qwen-image").base_credits == 3  # type: ignore[union-attr]


# Each entry gives ``NEW_MODEL`` exactly one defect.
BROKEN: dict[str, Callable[[dict[str, Any]], Any]] = {
    "duplicate param key": lambda doc: doc["params"].append(dict(doc["params"][0])),
    "default not in options": lambda doc: doc["params"][0].update(default="charcoal"),
    "select without options": lambda doc: doc["params"][0].pop("options"),
    "select with empty options": lambda doc: doc["params"][0].update(options=[]),
    "output sizes miss an option": lambda doc: doc["output"]["sizes"].pop("2:1"),
    "output sizes have an extra key": lambda doc: doc["output"]["sizes"].update({"3:1": [192, 64]}),
    "size_param is not a param": lambda doc: doc["output"].update(size_param="size"),
    "param named referenceMediaItems": lambda doc: doc["params"][0].update(key="referenceMediaItems"),
    "file input without reference rules": lambda doc: doc.pop("references"),
    "reference rules without file input": lambda doc: doc.update(inputs=["text"]),
    "text param with options": lambda doc: doc["params"][0].update(type="text"),
    "unknown field": lambda doc: doc.update(base_credit=3),
    "billing not FIXED": lambda doc: doc.update(billing="PER_SECOND"),
    "negative base credits": lambda doc: doc.update(base_credits=-1),
    "bad id": lambda doc: doc.update(id="Acme Sketch"),
    "price modifier on unknown param": lambda doc: doc.update(
        price_modifiers=[{"param": "quality", "value": "high", "credits": 2}]),
    "price modifier on unknown option": lambda doc: doc.update(
        price_modifiers=[{"param": "style", "value": "charcoal", "credits": 2}]),
}


def test_the_unbroken_base_document_is_valid() -> None:
    """Control for the next test: each broken file differs from a valid one by its one defect."""
    assert ModelSpec.model_validate(NEW_MODEL).id == "acme-sketch"


@pytest.mark.parametrize("change", list(BROKEN))
def test_a_malformed_model_file_stops_the_load(tmp_path: Path, change: str) -> None:
    document = copy.deepcopy(NEW_MODEL)
    BROKEN[change](document)
    assert document != NEW_MODEL
    path = write_model(tmp_path, document, name="broken")
    with pytest.raises(CatalogError) as info:
        load_catalog(tmp_path)
    assert str(path) in str(info.value)  # the operator learns which file to fix


def test_a_file_that_is_not_yaml_stops_the_load(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("id: [unclosed\n", encoding="utf-8")
    with pytest.raises(CatalogError):
        load_catalog(tmp_path)


def test_a_file_that_is_not_a_mapping_stops_the_load(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("- just\n- a list\n", encoding="utf-8")
    with pytest.raises(CatalogError):
        load_catalog(tmp_path)
