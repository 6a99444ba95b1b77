"""The playground in a real browser: Debian's Chromium driven by Playwright against the README's
first command (``sfumato serve --demo``) on a loopback port, with the sandbox provider.

Skipped, with the reason, when Playwright or Chromium is missing (``.ci/install-chromium``
installs Chromium; no browser is ever downloaded). Screenshots go to a temporary directory,
or to ``SFUMATO_SCREENSHOT_DIR`` (``docs/images`` to refresh the README's pictures).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from sfumato.catalog import load_catalog
from tests.processes import Processes

playwright_api = pytest.importorskip("playwright.sync_api",
                                     reason="playwright is not installed (pip install -e '.[dev]')")
sync_playwright = playwright_api.sync_playwright
expect = playwright_api.expect
Page = playwright_api.Page

pytestmark = pytest.mark.slow
CATALOG = load_catalog()
SFUMATO = [sys.executable, "-m", "sfumato.cli"]
TIMEOUT_MS = 20_000


def chromium_path() -> str | None:
    configured = os.environ.get("SFUMATO_TEST_CHROMIUM")
    if configured:
        return configured if Path(configured).exists() else None
    return shutil.which("chromium") or next(
        (p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if Path(p).exists()), None)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = chromium_path()
    if path is None:
        pytest.skip("Chromium not found (apt-get install -y chromium, or .ci/install-chromium; "
                    "or set SFUMATO_TEST_CHROMIUM)")
    # Chromium's sandbox needs user namespaces that root in a container does not get.
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path, args=args)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """``sfumato serve --demo`` with the worker and a fast sandbox; its URL and the demo key."""
    tmp_path = tmp_path_factory.mktemp("playground")
    env = {"SFUMATO_DATA_DIR": str(tmp_path / "data"), "SFUMATO_SANDBOX_LATENCY_MS": "150",
           "SFUMATO_DATABASE_URL": "", "SFUMATO_RATE_LIMIT_CREATE": "10000/minute"}
    processes = Processes(env, tmp_path)
    try:
        _, url = processes.api("serve", worker=True, extra=("--demo",))
        key = subprocess.run([*SFUMATO, "demo-key"], env=processes.env, capture_output=True, text=True,
                             check=True).stdout.strip()
        assert f"{url}/playground#key=" in processes.log_text("serve")  # the demo prints the playground
        yield url, key
    finally:
        processes.stop_all()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("SFUMATO_SCREENSHOT_DIR")
    directory = Path(configured) if configured else tmp_path_factory.mktemp("screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture
def page(browser: Any, server: tuple[str, str]) -> Iterator[Page]:
    """A fresh browser profile (empty localStorage) that has pasted the demo key."""
    url, key = server
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=url)
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    open_playground(tab, key)
    yield tab
    context.close()
    assert errors == [], errors


def open_playground(tab: Page, key: str | None, path: str = "/playground") -> None:
    tab.goto(path)
    expect(tab.locator("body")).to_have_attribute("data-ready", "true")
    if key is not None:
        tab.get_by_label("Your key").fill(key)
        tab.get_by_role("button", name="Use key").click()
        expect(tab.locator("#key-status")).to_have_text("Key accepted.")


def balance(tab: Page) -> int:
    return int(tab.locator("#balance").inner_text())


def generate(tab: Page) -> Any:
    """Submit the form; the card of the finished task."""
    before = tab.locator("#gallery > li").count()
    tab.locator("#generate").click()
    expect(tab.locator("#gallery > li")).to_have_count(before + 1)
    newest = tab.locator("#gallery > li").first
    expect(newest.locator(".badge")).to_have_text("succeeded")
    card = tab.locator(f"#gallery > li[data-task='{newest.get_attribute('data-task')}']")  # stays this task's card
    image = card.locator("img").first
    expect(image).to_have_js_property("complete", True)
    return card


def natural_size(image: Any) -> tuple[int, int]:
    width, height = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    return int(width), int(height)


def png_bytes(color: tuple[int, int, int], size: tuple[int, int] = (320, 240)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


CASES = [("gpt-image-1-5", {"aspect_ratio": "3:2", "quality": "high"}),
         ("qwen-image", {"image_size": "portrait_4_3", "output_format": "jpeg"}),
         ("google-imagen4", {"aspect_ratio": "16:9", "seed": "42"}),
         ("grok-imagine", {"aspect_ratio": "9:16", "enable_pro": "true"})]


@pytest.mark.parametrize(("model_id", "params"), CASES, ids=[c[0] for c in CASES])
def test_generate_with_each_model(page: Page, server: tuple[str, str], shots: Path, model_id: str,
                                  params: dict[str, str]) -> None:
    url, key = server
    spec = CATALOG.get(model_id)
    assert spec is not None
    authorized: list[str] = []
    page.on("request", lambda r: authorized.append(r.url) if "authorization" in r.headers else None)
    page.get_by_label("Model").select_option(model_id)
    for key_name, value in params.items():
        control = page.locator(f"#param-{key_name}")
        if spec.param(key_name) and spec.param(key_name).type == "select":  # type: ignore[union-attr]
            control.select_option(value)
        else:
            control.fill(value)
    page.get_by_label("Prompt", exact=True).fill("A lighthouse at dusk, film photo")
    expect(page.locator("#prompt-count")).to_have_text(f"32 / {spec.prompt_max_chars or 32000} characters")
    price = spec.price(params)
    expect(page.locator("#generate")).to_have_text(f"Generate · {price} credits")
    start = balance(page)

    card = generate(page)

    expect(card).to_contain_text(f"{price} credits charged")
    for value in params.values():
        expect(card.locator("dd", has_text=value).first).to_be_visible()
    assert natural_size(card.locator("img").first) == spec.output.size_for(params)
    extension = spec.output.format_for(params).replace("jpeg", "jpg")
    download = card.get_by_role("link", name="Download")
    expect(download).to_have_attribute("download", f"{card.get_attribute('data-task')}-0.{extension}")
    expect(page.locator("#balance")).to_have_text(str(start - price))
    expect(page.locator("#recent li").first).to_contain_text(model_id)
    # the key went out only in the Authorization header, only to this server
    assert authorized and all(u.startswith(url + "/api/v1/") for u in authorized)
    assert key not in page.url
    if model_id == "google-imagen4":
        page.screenshot(path=str(shots / "playground-result.png"), full_page=True)


def test_upload_a_reference_and_run_an_edit(page: Page, shots: Path) -> None:
    page.get_by_label("Model").select_option("qwen-image")
    expect(page.locator("#references")).to_be_visible()
    expect(page.locator("#references-rules")).to_contain_text("Up to 1 file (image/jpeg, image/png, image/webp")
    page.locator("#reference-files").set_input_files(
        [{"name": "sketch.png", "mimeType": "image/png", "buffer": png_bytes((200, 30, 30))}])
    thumbs = page.locator("#reference-list li")
    expect(thumbs).to_have_count(1)
    expect(thumbs.first).to_contain_text("sketch.png")
    expect(thumbs.first).not_to_have_class("pending")
    expect(page.locator("#references-label")).to_have_text("Reference images (1 / 1)")
    # the model takes one: a second file is refused beside the drop zone, before any upload
    page.locator("#reference-files").set_input_files(
        [{"name": "second.png", "mimeType": "image/png", "buffer": png_bytes((0, 0, 200))}])
    expect(page.locator("#err-references")).to_contain_text("at most 1")
    expect(thumbs).to_have_count(1)
    page.get_by_label("Prompt", exact=True).fill("Turn the sketch into a watercolour")
    page.screenshot(path=str(shots / "playground-reference.png"), full_page=True)

    card = generate(page)

    expect(card.locator("dt", has_text="references")).to_be_visible()
    expect(card.locator("dd").last).to_have_text("1")


def test_drop_images_on_a_multi_image_model(page: Page) -> None:
    page.get_by_label("Model").select_option("gpt-image-1-5")
    expect(page.locator("#references-rules")).to_contain_text("Up to 16 files")
    files = [("a.png", png_bytes((10, 200, 10))), ("b.png", png_bytes((10, 10, 200)))]
    transfer = page.evaluate_handle(
        """files => { const t = new DataTransfer();
             for (const [name, bytes] of files) {
               t.items.add(new File([new Uint8Array(bytes)], name, {type: "image/png"}));
             }
             return t; }""", [[name, list(data)] for name, data in files])
    page.locator("#dropzone").dispatch_event("drop", {"dataTransfer": transfer})
    expect(page.locator("#reference-list li:not(.pending)")).to_have_count(2)
    expect(page.locator("#references-label")).to_have_text("Reference images (2 / 16)")
    page.get_by_label("Prompt", exact=True).fill("Merge the two")
    card = generate(page)
    expect(card.locator("dd").last).to_have_text("2")


def test_validation_errors_appear_beside_their_fields(page: Page, shots: Path) -> None:
    page.get_by_label("Model").select_option("google-imagen4")
    # the counter counts code points like the server: an emoji is one, not two UTF-16 units
    page.get_by_label("Prompt", exact=True).fill("😀" * 2600)
    expect(page.locator("#prompt-count")).to_have_text("2600 / 5000 characters")
    expect(page.locator("#prompt-count")).not_to_have_class("over")
    page.get_by_label("Prompt", exact=True).fill("a" * 5001)
    expect(page.locator("#prompt-count")).to_have_class("over")
    page.locator("#param-seed").fill("not-a-number")
    page.locator("#generate").click()

    seed_error = page.locator("[id='err-params.seed']")
    expect(seed_error).to_contain_text("integer")
    expect(page.locator("#err-prompt")).to_contain_text("5000")
    expect(page.locator("#param-seed")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#prompt")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#err-form")).to_be_empty()
    expect(page.locator("#gallery > li")).to_have_count(0)
    page.screenshot(path=str(shots / "playground-validation.png"), full_page=True)

    page.get_by_label("Prompt", exact=True).fill("A lighthouse")
    page.locator("#param-seed").fill("7")
    generate(page)
    expect(seed_error).to_be_empty()
    expect(page.locator("#param-seed")).not_to_have_attribute("aria-invalid", "true")


def test_the_status_bar_reports_a_later_refusal(page: Page) -> None:
    page.get_by_label("Model").select_option("google-imagen4")
    page.get_by_label("Prompt", exact=True).fill("A lighthouse")
    generate(page)
    status = page.locator("#notice")
    expect(status).to_have_text("google-imagen4: succeeded.")
    page.locator("#param-seed").fill("not-a-number")
    page.locator("#generate").click()
    expect(page.locator("[id='err-params.seed']")).to_contain_text("integer")
    # the bar tells the newest outcome, not the earlier task's
    expect(status).to_contain_text("Not created: The request is not valid.")
    expect(status).not_to_contain_text("succeeded")


def generate_button_is_uncovered(page: Page) -> bool:
    """Whether the element at the Generate button's centre is the button (nothing drawn over it)."""
    return bool(page.evaluate("""() => {
      const button = document.getElementById("generate");
      const box = button.getBoundingClientRect();
      return button.contains(document.elementFromPoint(box.x + box.width / 2, box.y + box.height / 2));
    }"""))


def test_nothing_covers_the_generate_button_at_1280_by_900(page: Page) -> None:
    assert page.viewport_size == {"width": 1280, "height": 900}
    page.get_by_label("Model").select_option("grok-imagine")  # the longest form: the button is below the fold
    page.get_by_label("Prompt", exact=True).fill("A red fox in snow")
    generate(page)
    expect(page.locator("#notice")).not_to_be_empty()  # the status bar has something to say
    for block in ("end", "center", "start"):  # scrolled just far enough to see it, and further
        page.locator("#generate").evaluate(f"button => button.scrollIntoView({{block: '{block}'}})")
        assert generate_button_is_uncovered(page), block


def test_an_output_is_reused_as_a_reference(page: Page) -> None:
    page.get_by_label("Model").select_option("grok-imagine")
    page.get_by_label("Prompt", exact=True).fill("A red fox in snow")
    first = generate(page)
    output_url = first.locator("img").first.get_attribute("src")
    first.get_by_role("button", name="Use as reference").click()
    thumbs = page.locator("#reference-list li")
    expect(thumbs).to_have_count(1)
    expect(thumbs.locator("img")).to_have_attribute("src", output_url or "")
    expect(page.locator("#notice")).to_contain_text("added as a reference image")
    page.get_by_label("Prompt", exact=True).fill("The same fox, at night")

    second = generate(page)

    assert second.get_attribute("data-task") != first.get_attribute("data-task")
    expect(second.locator("dt", has_text="references")).to_be_visible()
    # a model that takes no references says so instead of sending them
    page.get_by_label("Model").select_option("google-imagen4")
    expect(page.locator("#references")).to_be_hidden()
    second.get_by_role("button", name="Use as reference").click()
    expect(page.locator("#notice")).to_contain_text("takes no reference images")


def test_progress_falls_back_to_polling_without_the_events_stream(page: Page) -> None:
    page.route("**/api/v1/tasks/*/events", lambda route: route.fulfill(status=404, body="{}"))
    page.get_by_label("Model").select_option("qwen-image")
    page.get_by_label("Prompt", exact=True).fill("Polled, not streamed")
    page.locator("#generate").click()
    expect(page.locator("#progress .job")).to_contain_text("qwen-image:")
    card = page.locator("#gallery > li").first
    expect(card.locator(".badge")).to_have_text("succeeded")
    expect(page.locator("#progress .job")).to_have_count(0)


WATCH_PREVIEWS = """() => {
  window.seen = [];
  const note = (what, detail) => window.seen.push({ what, ...detail, at: performance.now() });
  new MutationObserver((changes) => {
    for (const change of changes) {
      const target = change.target;
      if (change.type === "attributes" && target.matches("img.preview") && target.src) {
        const width = Number(target.getAttribute("width"));
        note("preview", { index: Number(target.dataset.index), width, shown: !target.hidden });
      }
      for (const added of change.addedNodes || []) {
        if (added.nodeType === 1 && added.matches("#gallery > li")) note("result", {});
      }
    }
  }).observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ["src"] });
}"""


def test_each_preview_shows_before_the_result(page: Page) -> None:
    """gpt-image-1-5 asks for two previews (its catalog default); the sandbox streams them."""
    page.evaluate(WATCH_PREVIEWS)
    page.get_by_label("Model").select_option("gpt-image-1-5")
    page.get_by_label("Prompt", exact=True).fill("Previews first, then the picture")
    generate(page)
    seen = page.evaluate("window.seen")
    previews = [s for s in seen if s["what"] == "preview"]
    result = next(s for s in seen if s["what"] == "result")
    assert [p["index"] for p in previews] == [0, 1], seen
    assert all(p["shown"] and p["width"] == 1024 and p["at"] < result["at"] for p in previews), seen


def test_phone_screen_with_the_key_from_the_demo_link(browser: Any, server: tuple[str, str], shots: Path) -> None:
    url, key = server
    context = browser.new_context(viewport={"width": 390, "height": 844}, base_url=url, is_mobile=True,
                                  has_touch=True, device_scale_factor=2)
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    try:
        open_playground(tab, None, f"/playground?model=qwen-image#key={key}")
        expect(tab.locator("#key-status")).to_have_text("Key accepted.")
        assert "#key" not in tab.url  # taken out of the address bar at once
        expect(tab.get_by_label("Model")).to_have_value("qwen-image")
        tab.get_by_label("Prompt", exact=True).fill("A paper boat on a puddle")
        card = generate(tab)
        expect(card.get_by_role("button", name="Use as reference")).to_be_visible()
        overflow = tab.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0
        card.scroll_into_view_if_needed()
        tab.screenshot(path=str(shots / "playground-phone.png"), full_page=False)
    finally:
        context.close()


def test_an_upload_the_server_refuses_is_reported_beside_the_drop_zone(page: Page) -> None:
    page.get_by_label("Model").select_option("grok-imagine")
    # the name and type say PNG; the bytes do not, and the server decides from the bytes
    page.locator("#reference-files").set_input_files(
        [{"name": "notes.png", "mimeType": "image/png", "buffer": b"just some text, not an image"}])
    expect(page.locator("#err-references")).to_contain_text("notes.png:")
    expect(page.locator("#reference-list li")).to_have_count(0)
    page.locator("#reference-files").set_input_files(
        [{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"text"}])
    expect(page.locator("#err-references")).to_contain_text("notes.txt: not one of image/jpeg, image/png, image/webp")
