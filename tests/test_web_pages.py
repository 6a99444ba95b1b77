"""The model pages: every catalog model rendered from its data, in English and Thai, escaped,
with the same facts as the seed pages."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from sfumato.catalog import load_catalog
from tests.conftest import serve

CATALOG = load_catalog()


@pytest.fixture
async def client(make_deps: Callable[..., Any]) -> Any:
    deps = await make_deps(run_worker=False)
    async with serve(deps) as http:
        yield http


@pytest.mark.parametrize("model_id", CATALOG.ids)
async def test_each_model_page_has_the_seed_pages_facts(client: httpx.AsyncClient, model_id: str) -> None:
    spec = CATALOG.get(model_id)
    assert spec is not None
    page = await client.get(f"/models/{model_id}")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert f"<code>{spec.id}</code>" in html and spec.name in html
    assert f"<dd>{spec.base_credits}</dd>" in html and spec.billing in html
    assert (f"{spec.prompt_max_chars} characters" if spec.prompt_max_chars else "none documented") in html
    for param in spec.params:
        assert f"<code>{param.key}</code>" in html
        for option in param.options or ():
            assert f"<code>{option}</code>" in html
    assert ("referenceMediaItems" in html) == (spec.references is not None)
    assert "Minimal request" in html and "validation_failed" in html and "insufficient_credits" in html
    assert "&#34;status&#34;: &#34;succeeded&#34;" in html or '"status": "succeeded"' in html


async def test_thai_rendering_uses_the_catalogs_thai_text(client: httpx.AsyncClient) -> None:
    thai = await client.get("/models/qwen-image?lang=th")
    by_header = await client.get("/models/qwen-image", headers={"Accept-Language": "th-TH,th;q=0.9,en;q=0.5"})
    english = await client.get("/models/qwen-image")
    assert 'lang="th"' in thai.text and "ขนาดรูปภาพ" in thai.text and "เครดิต" in thai.text
    assert by_header.text == thai.text
    assert 'lang="en"' in english.text and "Image size" in english.text and "ขนาดรูปภาพ" not in english.text


async def test_the_index_lists_every_model_and_unknown_is_404(client: httpx.AsyncClient) -> None:
    index = await client.get("/models")
    missing = await client.get("/models/nope")
    api = await client.get("/api/v1/models")
    assert all(f"/models/{model_id}" in index.text for model_id in CATALOG.ids)
    assert missing.status_code == 404 and "/models/qwen-image" in missing.text
    assert api.headers["content-type"].startswith("application/json")  # the JSON API is untouched


async def test_catalog_text_is_escaped(make_deps: Callable[..., Any], tmp_path: Path) -> None:
    source = (Path(__file__).resolve().parents[1] / "src/sfumato/catalog/models/qwen-image.yaml").read_text()
    evil = source.replace("id: qwen-image", "id: evil-model").replace(
        "en: Alibaba's Qwen Image for text-to-image and single-image editing.",
        'en: "<script>alert(1)</script> & more"')
    (tmp_path / "evil.yaml").write_text(evil)
    deps = await make_deps(run_worker=False, catalog_dir=tmp_path)
    async with serve(deps) as http:
        page = await http.get("/models/evil-model")
    assert "<script>alert(1)</script>" not in page.text and "&lt;script&gt;" in page.text
