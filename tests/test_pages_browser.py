"""The model pages in Debian's Chromium (Playwright) against ``sfumato serve`` on a loopback port:
on a phone nothing runs off the right edge, and Thai text is drawn in a Thai font that the page's
own font stack names (not whatever the machine's fallback finds, nor boxes).

Skipped, with the reason, when Playwright or Chromium is missing, and the Thai test when no Thai
font is installed (``.ci/install-chromium`` installs chromium and fonts-thai-tlwg).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from sfumato.catalog import load_catalog
from tests.processes import Processes

playwright_api = pytest.importorskip("playwright.sync_api",
                                     reason="playwright is not installed (pip install -e '.[dev]')")
from tests import test_playground_browser  # noqa: E402  (after the skip)

TIMEOUT_MS = test_playground_browser.TIMEOUT_MS
browser = test_playground_browser.browser  # the playground's module-scoped Chromium fixture, shared

Page = playwright_api.Page
pytestmark = pytest.mark.slow
CATALOG = load_catalog()
PAGES = ["/models", "/th/models"] + [f"{lang}/models/{model_id}" for model_id in CATALOG.ids for lang in ("", "/th")]
THAI = re.compile("[\u0e00-\u0e7f]")

# Every element drawn past the viewport's right edge, but for code blocks (which scroll inside).
PAST_THE_RIGHT_EDGE = """() => [...document.body.querySelectorAll("*")]
  .filter((e) => !e.closest("pre") && e.getBoundingClientRect().right > innerWidth + 0.5)
  .map((e) => `${e.tagName.toLowerCase()} ${Math.round(e.getBoundingClientRect().right)}px: ${
    e.textContent.trim().slice(0, 40)}`)"""
# Marks the elements whose own text is Thai only (headings, table headings, labels): their glyphs
# all come from the Thai face, so the font Chromium used for them is the one that drew the Thai.
MARK_THAI_ONLY = """() => {
  const thaiOnly = /^[\\u0e00-\\u0e7f\\s]+$/;
  const marked = [...document.body.querySelectorAll("*")].filter((e) => {
    const own = [...e.childNodes].filter((n) => n.nodeType === Node.TEXT_NODE).map((n) => n.data).join("");
    return e.children.length === 0 && thaiOnly.test(own) && own.trim() !== "";
  });
  marked.forEach((e, i) => e.setAttribute("data-thai-probe", String(i)));
  return marked.length;
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp_path = tmp_path_factory.mktemp("pages")
    processes = Processes({"SFUMATO_DATA_DIR": str(tmp_path / "data"), "SFUMATO_DATABASE_URL": ""}, tmp_path)
    try:
        _, url = processes.api("serve")
        yield url
    finally:
        processes.stop_all()


@pytest.fixture
def phone(browser: Any, server: str) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 390, "height": 844}, base_url=server, is_mobile=True,
                                  has_touch=True, device_scale_factor=2)
    context.set_default_timeout(TIMEOUT_MS)
    yield context.new_page()
    context.close()


@pytest.mark.parametrize("path", PAGES)
def test_nothing_runs_off_a_phone_screen(phone: Page, path: str) -> None:
    answer = phone.goto(path)
    assert answer is not None and answer.status == 200
    width = phone.evaluate("innerWidth")
    assert width == 390
    assert phone.evaluate("document.documentElement.scrollWidth") <= width
    # and no table wider than the screen, to be scrolled sideways inside its box
    assert phone.evaluate(PAST_THE_RIGHT_EDGE) == []


def thai_families() -> set[str]:
    if shutil.which("fc-list") is None:
        return set()
    listed = subprocess.run(["fc-list", ":lang=th", "family"], capture_output=True, text=True, check=False).stdout
    return {name.strip() for line in listed.splitlines() for name in line.split(",") if name.strip()}


def stack_of(page: Page, selector: str) -> list[str]:
    family = page.eval_on_selector(selector, "e => getComputedStyle(e).fontFamily")
    return [name.strip().strip('"') for name in family.split(",")]


@pytest.mark.parametrize("path", ["/th/models", "/th/models/qwen-image"])
def test_thai_is_drawn_in_a_thai_font_the_page_names(browser: Any, server: str, path: str) -> None:
    installed = thai_families()
    if not installed:
        pytest.skip("no Thai font installed (apt-get install -y fonts-thai-tlwg, or .ci/install-chromium)")
    context = browser.new_context(base_url=server)
    try:
        page = context.new_page()
        page.goto(path)
        assert THAI.search(page.locator("main").inner_text())
        count = page.evaluate(MARK_THAI_ONLY)
        assert count >= 3  # the heading, table headings, labels
        cdp = context.new_cdp_session(page)
        cdp.send("DOM.enable")
        cdp.send("CSS.enable")
        root = cdp.send("DOM.getDocument", {"depth": 0})["root"]["nodeId"]
        for index in range(count):
            selector = f"[data-thai-probe='{index}']"
            node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
            used = {font["familyName"] for font in cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]}
            stack = stack_of(page, selector)
            text = page.locator(selector).inner_text()
            # one Thai font drew it (no boxes from a Latin face), and the page's stack chose it:
            # a font the machine's fallback picked, unnamed by the page, fails here
            assert len(used) == 1 and used <= installed, (text, used)
            assert used <= set(stack), (text, used, stack)
    finally:
        context.close()
