"""The API reference offline: ``/docs`` (Swagger UI) and ``/redoc`` in Debian's Chromium, driven
by Playwright against ``sfumato serve`` on a loopback port, with every request that would leave
127.0.0.1 refused and recorded. Both pages must draw every operation of ``/openapi.json`` from
the package's own assets, under their Content-Security-Policy, without one violation of it.

Skipped, with the reason, when Playwright or Chromium is missing (``.ci/install-chromium``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.processes import Processes

playwright_api = pytest.importorskip("playwright.sync_api",
                                     reason="playwright is not installed (pip install -e '.[dev]')")
from tests import test_playground_browser  # noqa: E402  (after the skip)

TIMEOUT_MS = test_playground_browser.TIMEOUT_MS
browser = test_playground_browser.browser  # the playground's module-scoped Chromium fixture, shared

expect = playwright_api.expect
Page = playwright_api.Page
pytestmark = pytest.mark.slow

# The one thing either page reaches for off this host: Redoc's sidebar draws Redocly's logo from
# their CDN (hard-coded in the bundle). The policy's img-src refuses it before any request is
# made, and Redoc hides the broken image; every other violation fails the test.
REDOCLY_LOGO = "img-src https://cdn.redoc.ly/redoc/logo-mini.svg"
RECORD_VIOLATIONS = """document.addEventListener("securitypolicyviolation", (event) => {
  (window.__violations = window.__violations || []).push(`${event.violatedDirective} ${event.blockedURI}`);
});"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp_path = tmp_path_factory.mktemp("docs")
    processes = Processes({"SFUMATO_DATA_DIR": str(tmp_path / "data"), "SFUMATO_DATABASE_URL": ""}, tmp_path)
    try:
        _, url = processes.api("serve")
        yield url
    finally:
        processes.stop_all()


@pytest.fixture(scope="module")
def operations(server: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(METHOD, path, operation) for every operation the schema documents."""
    schema = httpx.get(f"{server}/openapi.json").json()
    found = [(method.upper(), path, op) for path, item in schema["paths"].items() for method, op in item.items()]
    assert len(found) > 20  # the whole API, not an empty schema
    return found


class Offline:
    """A tab whose requests may reach 127.0.0.1 only; the others are refused and kept here."""

    def __init__(self, browser: Any, url: str):
        self.url = url
        self.context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=url)
        self.context.set_default_timeout(TIMEOUT_MS)
        self.off_host: list[str] = []
        self.context.route("**/*", self._only_loopback)
        self.context.add_init_script(RECORD_VIOLATIONS)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))

    def _only_loopback(self, route: Any) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            self.off_host.append(route.request.url)
            route.abort()

    def violations(self) -> list[str]:
        return list(self.page.evaluate("window.__violations || []"))


@pytest.fixture
def offline(browser: Any, server: str) -> Iterator[Offline]:
    tab = Offline(browser, server)
    yield tab
    tab.context.close()


def test_swagger_ui_draws_every_operation_from_this_server_alone(
        offline: Offline, operations: list[tuple[str, str, dict[str, Any]]]) -> None:
    page = offline.page
    page.goto("/docs")
    expect(page.locator(".opblock")).to_have_count(len(operations))
    for method, path, _ in operations:
        block = page.locator(".opblock", has=page.locator(f".opblock-summary-path[data-path='{path}']"))
        expect(block.locator(".opblock-summary-method", has_text=method).first).to_be_visible()
    expect(page.locator(".info .title")).to_contain_text("sfumato")
    # the reference works, not only draws: an operation opens and Try it out reaches this server
    page.locator(".opblock-summary-path[data-path='/api/v1/models']").click()
    page.get_by_role("button", name="Try it out").click()
    with page.expect_response(lambda r: r.url.endswith("/api/v1/models")) as answer:
        page.get_by_role("button", name="Execute").click()
    assert answer.value.status == 200
    assert offline.off_host == [] and offline.violations() == [] and offline.errors == []


def test_redoc_draws_every_operation_from_this_server_alone(
        offline: Offline, operations: list[tuple[str, str, dict[str, Any]]]) -> None:
    page = offline.page
    page.goto("/redoc")
    sections = page.locator("[data-section-id^='tag/'][data-section-id*='/operation/']")
    expect(sections).to_have_count(len(operations))
    for _, _, op in operations:
        section = page.locator(f"[data-section-id='tag/{op['tags'][0]}/operation/{op['operationId']}']")
        expect(section.locator("h2")).to_have_text(op["summary"])
    page.get_by_placeholder("Search...").fill("webhook")  # Redoc's search runs in a blob: worker
    expect(page.locator("[role=search] li").first).to_be_visible()
    assert offline.off_host == [] and offline.errors == []
    assert [v for v in offline.violations() if v != REDOCLY_LOGO] == []


def test_the_playground_links_to_the_local_reference(offline: Offline) -> None:
    page = offline.page
    page.goto("/playground")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    page.get_by_role("link", name="API reference").click()
    expect(page).to_have_url(f"{offline.url}/docs")
    expect(page.locator(".opblock").first).to_be_visible()
    page.go_back()
    page.get_by_role("link", name="Redoc").click()
    expect(page.locator("[data-section-id]").first).to_be_attached()
    assert offline.off_host == []
