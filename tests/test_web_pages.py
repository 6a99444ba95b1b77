"""The pages for people: every catalog model rendered from its data with the same facts as the
seed pages, in English and Thai, escaped; and the playground's shell and its static files."""

from __future__ import annotations

import html
import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

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
    text = html.unescape(page.text)
    assert f"<code>{spec.id}</code>" in text and spec.name in text
    assert f"<dd>{spec.base_credits}</dd>" in text and "<dd>FIXED</dd>" in text and "<dd>image</dd>" in text
    assert ", ".join(spec.inputs) in text
    assert (f"{spec.prompt_max_chars} characters" if spec.prompt_max_chars else "no prompt limit documented") in text
    assert ("required for reference mode" if spec.files_api == "required_for_reference" else "not required") in text
    for key in ("model", "prompt", "params", "client_request_id"):  # the request contract
        assert f'<td data-label="Key"><code>{key}</code></td>' in text
    for param in spec.params:
        assert f"<code>{param.key}</code>" in text and param.label["en"] in text
        for option in param.options or ():
            assert f"<code>{option}</code>" in text
    if spec.references is not None:
        assert f"<dt>Maximum files</dt><dd>{spec.references.max_files}</dd>" in text
        assert '10 MB</td><td data-label="MIME types">image/jpeg, image/png, image/webp</td>' in text
        assert '"referenceMediaItems": [' in text and "Upload policy" in text
    else:
        assert "takes no reference files" in text and '"referenceMediaItems": [' not in text
    assert f'"model": "{spec.id}"' in text and '"status": "queued"' in text and '"status": "succeeded"' in text
    assert f'"reserved_credits": {spec.base_credits}' in text
    for code in ("validation_failed", "insufficient_credits", "idempotency_conflict", "rate_limited", "not_found"):
        assert f"<code>{code}</code>" in text
    assert f'href="/playground?model={spec.id}"' in text


async def test_thai_rendering_by_path_query_or_browser(client: httpx.AsyncClient) -> None:
    by_path = await client.get("/th/models/qwen-image")
    by_query = await client.get("/models/qwen-image?lang=th")
    by_header = await client.get("/models/qwen-image", headers={"Accept-Language": "th-TH,th;q=0.9,en;q=0.5"})
    english = await client.get("/models/qwen-image")
    assert by_path.status_code == 200 and by_path.headers["content-language"] == "th"
    assert 'lang="th"' in by_path.text and "ขนาดรูปภาพ" in by_path.text and "เครดิตพื้นฐาน" in by_path.text
    assert "ภาพอ้างอิง: อัปโหลดไฟล์รูปภาพได้สูงสุด 1 ไฟล์" in by_path.text  # the catalog's Thai text
    assert by_query.text == by_path.text == by_header.text
    assert 'lang="en"' in english.text and "Image size" in english.text and "ขนาดรูปภาพ" not in english.text
    assert english.headers["vary"] == "Accept-Language"
    # a Thai-first browser can still pick English: the link pins it
    pinned = await client.get("/models/qwen-image?lang=en", headers={"Accept-Language": "th"})
    assert 'href="/models/qwen-image?lang=en"' in by_path.text and 'lang="en"' in pinned.text
    thai_index = await client.get("/th/models")
    assert all(f'href="/th/models/{model_id}"' in thai_index.text for model_id in CATALOG.ids)


@pytest.mark.parametrize("model_id", CATALOG.ids)
async def test_every_model_has_a_thai_page_with_its_thai_text(client: httpx.AsyncClient, model_id: str) -> None:
    spec = CATALOG.get(model_id)
    assert spec is not None
    page = html.unescape((await client.get(f"/th/models/{model_id}")).text)
    assert spec.summary["th"] in page and "ID โมเดล API" in page and "error ทั่วไป" in page
    for param in spec.params:
        assert param.label["th"] in page


async def test_the_index_lists_every_model_and_unknown_is_404(client: httpx.AsyncClient) -> None:
    index = await client.get("/models")
    missing = await client.get("/models/nope")
    missing_thai = await client.get("/th/models/nope")
    api = await client.get("/api/v1/models")
    assert all(f'href="/models/{model_id}"' in index.text for model_id in CATALOG.ids)
    assert missing.status_code == 404 and 'href="/models/qwen-image"' in missing.text
    assert missing_thai.status_code == 404 and "ไม่พบโมเดลนี้" in missing_thai.text
    assert api.headers["content-type"].startswith("application/json")  # the JSON API is untouched
    assert {m["id"] for m in api.json()["data"]} == set(CATALOG.ids)


async def test_catalog_text_is_escaped(make_deps: Callable[..., Any], tmp_path: Path) -> None:
    source = (Path(__file__).resolve().parents[1] / "src/sfumato/catalog/models/qwen-image.yaml").read_text()
    evil = source.replace("id: qwen-image", "id: evil-model").replace(
        "en: Alibaba's Qwen Image for text-to-image and single-image editing.",
        'en: "<script>alert(1)</script> & more"').replace(
        "label: {en: Image size, th: ขนาดรูปภาพ}", 'label: {en: "<img src=x onerror=alert(2)>", th: x}')
    (tmp_path / "evil.yaml").write_text(evil)
    deps = await make_deps(run_worker=False, catalog_dir=tmp_path)
    async with serve(deps) as http:
        page = await http.get("/models/evil-model")
        index = await http.get("/models")
    for body in (page.text, index.text):
        assert "<script>alert(1)</script>" not in body and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in body
    assert "<img src=x" not in page.text and "&lt;img src=x onerror=alert(2)&gt;" in page.text


async def test_the_playground_shell_keeps_scripts_and_requests_on_this_origin(client: httpx.AsyncClient) -> None:
    page = await client.get("/playground")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy and "default-src 'none'" in policy
    assert page.headers["referrer-policy"] == "no-referrer"
    assert '<script type="module" src="/playground/assets/playground.js"></script>' in page.text
    assert "<script>" not in page.text and "style=" not in page.text  # nothing inline for the policy to allow
    assert 'aria-live="polite"' in page.text and '<label for="prompt">' in page.text


async def test_playground_assets_are_served_by_name_only(client: httpx.AsyncClient) -> None:
    static = Path(__file__).resolve().parents[1] / "src/sfumato/web/static"
    for path in static.iterdir():
        answer = await client.get(f"/playground/assets/{path.name}")
        assert answer.status_code == 200 and answer.content == path.read_bytes()
        expected = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml",
                    ".ico": "image/x-icon"}[path.suffix]
        assert answer.headers["content-type"].split(";")[0] == expected
    for bad in ("nope.js", "..%2Fpages.py", "%2e%2e%2fpages.py", "playground.html"):
        assert (await client.get(f"/playground/assets/{bad}")).status_code == 404


# The English summary's words, and what their Thai translation must say.
SUMMARY_TERMS = {"text-to-image": "สร้างภาพจากข้อความ", "editing": "แก้ไขภาพ", "multi-image": "หลายภาพ",
                 "single-image": "หนึ่งภาพ", "negative prompt": "พรอมต์เชิงลบ", "seed": "seed"}


@pytest.mark.parametrize("model_id", CATALOG.ids)
def test_the_thai_summary_translates_the_english_one(model_id: str) -> None:
    spec = CATALOG.get(model_id)
    assert spec is not None
    english, thai = spec.summary["en"], spec.summary["th"]
    named = re.fullmatch(r"(\S+)'s (.+?) for .*", english)  # "Google's Imagen 4 for ..."
    assert named is not None
    vendor, product = named.groups()
    assert vendor in thai and product in thai  # "Imagen 4 ของ Google สำหรับ..."
    for term, translated in SUMMARY_TERMS.items():
        assert (translated in thai) == (term in english), (term, thai)
    assert "Public API" not in thai and "model id" not in thai  # not the old boilerplate


async def test_the_site_icon_is_served(client: httpx.AsyncClient) -> None:
    ico = await client.get("/favicon.ico")
    assert ico.status_code == 200 and ico.headers["content-type"] == "image/x-icon"
    with Image.open(io.BytesIO(ico.content)) as icon:
        assert icon.format == "ICO" and {(16, 16), (32, 32)} <= icon.info["sizes"]
    svg = await client.get("/favicon.svg")
    assert svg.status_code == 200 and svg.headers["content-type"] == "image/svg+xml"
    assert ET.fromstring(svg.content).tag == "{http://www.w3.org/2000/svg}svg"
    for path in ("/models", "/th/models/qwen-image", "/playground", "/docs", "/redoc"):
        page = (await client.get(path)).text
        assert '<link rel="icon" href="/favicon.svg" type="image/svg+xml">' in page, path
        assert '<link rel="icon" href="/favicon.ico"' in page, path


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
async def test_the_api_reference_pages_load_only_this_servers_assets(client: httpx.AsyncClient, path: str) -> None:
    first, second = await client.get(path), await client.get(path)
    assert first.status_code == 200 and first.headers["content-type"].startswith("text/html")
    urls = re.findall(r'(?:src|href)="([^"]+)"', first.text)
    assert urls and all(url.startswith("/") and not url.startswith("//") for url in urls), urls
    assert "cdn." not in first.text and "fonts.googleapis" not in first.text
    policy = first.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self';" in policy and "connect-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    nonce = re.search(r"'nonce-([^']+)'", policy)
    assert nonce is not None and nonce.group(1) not in second.headers["content-security-policy"]  # per response
    assert "<script>" not in first.text  # no inline script: every script is a file from this server
    for url in urls:
        if url.startswith("/docs/assets/"):
            asset = await client.get(url)
            assert asset.status_code == 200 and len(asset.content) > 100, url
            assert asset.headers["content-type"].split(";")[0] in ("text/javascript", "text/css")
    for bad in ("nope.js", "..%2Fcore.py", "__init__.py"):
        assert (await client.get(f"/docs/assets/{bad}")).status_code == 404
