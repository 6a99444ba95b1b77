"""The console in a real browser: Debian's Chromium driven by Playwright against
``sfumato serve --demo`` (worker included, sandbox provider) with ``SFUMATO_ADMIN_KEY`` set, on a
loopback port. An operator's story, clicked through: sign in, create an account, grant credits,
issue a key (its secret shown once), see the customer's task in the usage chart, revoke the key,
the providers' circuits and the audit log; and the same page on a phone.

Skipped, with the reason, when Playwright or Chromium is missing. Screenshots go to a temporary
directory, or to ``SFUMATO_SCREENSHOT_DIR`` (``docs/images`` to refresh the README's pictures).
"""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.processes import Processes, free_port

playwright_api = pytest.importorskip("playwright.sync_api",
                                     reason="playwright is not installed (pip install -e '.[dev]')")
from tests import test_playground_browser as playground  # noqa: E402  (after the skip)
from tests.test_pages_browser import PAST_THE_RIGHT_EDGE  # noqa: E402

expect = playwright_api.expect
Page = playwright_api.Page
pytestmark = pytest.mark.slow
browser = playground.browser  # the playground's module-scoped Chromium fixture, shared
shots = playground.shots
TIMEOUT_MS = playground.TIMEOUT_MS
ADMIN_KEY = f"sk-admin-console-{secrets.token_hex(12)}"
DOWN_ROUTE = "xai-down"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """``sfumato serve --demo`` with the worker, a fast sandbox and a known admin key; its URL and
    the demo (customer) key. grok-imagine goes to an upstream that is down (a loopback port nothing
    listens on), whose circuit opens at the first failure; the other models run on the sandbox."""
    tmp_path = tmp_path_factory.mktemp("console")
    routes = tmp_path / "routes.yaml"
    routes.write_text(f"""models:
  grok-imagine:
    - provider: xai
      name: {DOWN_ROUTE}
      upstream_model: grok-imagine-image
      base_url: http://127.0.0.1:{free_port()}/v1
      credentials_env: SFUMATO_TEST_DOWN_KEY
      timeout_seconds: 5
      retry: {{max_attempts: 1}}
      breaker: {{failures: 1, reset_seconds: 600}}
""")
    env = {"SFUMATO_DATA_DIR": str(tmp_path / "data"), "SFUMATO_SANDBOX_LATENCY_MS": "100",
           "SFUMATO_DATABASE_URL": "", "SFUMATO_RATE_LIMIT_CREATE": "10000/minute",
           "SFUMATO_ADMIN_KEY": ADMIN_KEY, "SFUMATO_ROUTES_FILE": str(routes), "SFUMATO_TEST_DOWN_KEY": "xai-test"}
    processes = Processes(env, tmp_path)
    try:
        _, url = processes.api("serve", worker=True, extra=("--demo",))
        key = subprocess.run([*playground.SFUMATO, "demo-key"], env=processes.env, capture_output=True,
                             text=True, check=True).stdout.strip()
        yield url, key
    finally:
        processes.stop_all()


def new_tab(browser: Any, url: str, **context: Any) -> tuple[Any, Page, list[str]]:
    options = {"viewport": {"width": 1280, "height": 900}, **context}
    made = browser.new_context(base_url=url, **options)
    made.set_default_timeout(TIMEOUT_MS)
    tab = made.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    return made, tab, errors


@pytest.fixture
def page(browser: Any, server: tuple[str, str]) -> Iterator[Page]:
    """A fresh browser profile (empty localStorage) signed in with the admin key."""
    made, tab, errors = new_tab(browser, server[0])
    sign_in(tab, ADMIN_KEY)
    yield tab
    made.close()
    assert errors == [], errors


def sign_in(tab: Page, key: str, path: str = "/console") -> None:
    tab.goto(path)
    expect(tab.locator("body")).to_have_attribute("data-ready", "true")
    tab.get_by_label("Admin key").fill(key)
    tab.get_by_role("button", name="Sign in").click()


def create_account(tab: Page, name: str, credits: int = 0) -> str:
    """Create an account through the form; its id (the detail panel opens on it)."""
    tab.locator("#new-account-name").fill(name)
    tab.locator("#new-account-credits").fill(str(credits))
    tab.get_by_role("button", name="Create account").click()
    expect(tab.locator("#accounts-status")).to_contain_text(f"Created {name}")
    expect(tab.locator("#detail-name")).to_have_text(name)
    return tab.locator("#detail-id").inner_text()


def run_task(url: str, key: str, model: str) -> dict[str, Any]:
    """A task made with a customer's key, followed to its end."""
    created = httpx.post(f"{url}/api/v1/tasks", headers={"Authorization": f"Bearer {key}"},
                         json={"model": model, "prompt": "A lighthouse at dusk"})
    assert created.is_success, created.text
    task_id = created.json()["id"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        task: dict[str, Any] = httpx.get(f"{url}/api/v1/tasks/{task_id}",
                                         headers={"Authorization": f"Bearer {key}"}).json()
        if task["status"] in ("succeeded", "failed", "canceled"):
            return task
        time.sleep(0.2)
    raise AssertionError(f"{task_id} did not finish")


def test_the_shell_keeps_scripts_and_requests_on_this_origin(server: tuple[str, str]) -> None:
    url, _ = server
    shell = httpx.get(f"{url}/console")
    assert shell.status_code == 200
    policy = shell.headers["content-security-policy"]
    for directive in ("default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'",
                      "frame-ancestors 'none'"):
        assert directive in policy
    assert "unsafe-inline" not in policy and "http" not in policy
    assert shell.headers["cache-control"] == "no-store"
    assert '<script type="module" src="/console/assets/console.js"></script>' in shell.text
    assert "<script>" not in shell.text and "<style" not in shell.text and " style=" not in shell.text
    for name in ("console.js", "console-accounts.js", "console-api.js", "console-chart.js", "console.css",
                 "dom.js", "api.js", "playground.css"):
        assert httpx.get(f"{url}/console/assets/{name}").status_code == 200, name
    for bad in ("playground.js", "console.html", "..%2Fconsole.py", "%2e%2e%2fconsole.py"):
        assert httpx.get(f"{url}/console/assets/{bad}").status_code == 404, bad


def test_a_customer_key_does_not_sign_in(browser: Any, server: tuple[str, str]) -> None:
    url, demo_key = server
    made, tab, errors = new_tab(browser, url)
    try:
        sign_in(tab, demo_key)
        expect(tab.locator("#key-status")).to_have_text("This server does not accept that key as its admin key.")
        expect(tab.locator("#console")).to_be_hidden()
        assert errors == []
    finally:
        made.close()


def test_an_operators_story(page: Page, server: tuple[str, str], shots: Path) -> None:
    url, _ = server
    expect(page.locator("#key-status")).to_have_text("Signed in.")
    authorized: list[str] = []
    page.on("request", lambda r: authorized.append(r.url) if "authorization" in r.headers else None)
    name = f"acme-{secrets.token_hex(3)}"
    account_id = create_account(page, name)
    expect(page.locator("#detail-balance")).to_have_text("0")

    # grant: the balance updates, the ledger shows the entry
    page.locator("#grant-credits").fill("500")
    page.locator("#grant-note").fill("invoice 42")
    page.get_by_role("button", name="Grant").click()
    expect(page.locator("#grant-status")).to_have_text("Granted 500 credits: the balance is 500.")
    expect(page.locator("#detail-balance")).to_have_text("500")
    expect(page.locator("#ledger tr").first).to_contain_text("+500")
    expect(page.locator("#ledger tr").first).to_contain_text("invoice 42")
    expect(page.locator(f"#accounts tr[data-account='{account_id}']")).to_contain_text("500")

    # a key, shown once: in the page until dismissed, never again
    page.locator("#key-name").fill("backend")
    page.get_by_role("button", name="Issue key").click()
    expect(page.locator("#new-secret")).to_be_visible()
    secret = page.locator("#new-secret-value").inner_text()
    assert secret.startswith("sk-")
    row = page.locator("#keys tr", has_text="backend")
    expect(row).to_contain_text(secret[-4:])
    expect(row.locator(".badge")).to_have_text("active")
    page.locator("#hide-secret").click()  # copied: the secret leaves the page for good
    expect(page.locator("#new-secret")).to_be_hidden()
    assert secret not in page.content()

    # the customer makes tasks with it; they show in the usage chart by day and model
    task = run_task(url, secret, "qwen-image")
    assert task["status"] == "succeeded"
    failed = run_task(url, secret, "grok-imagine")
    assert failed["status"] == "failed"
    page.get_by_role("button", name="Update").click()
    segment = page.locator("#usage-chart rect[data-model='qwen-image']")
    expect(segment.first).to_be_visible()
    assert sum(float(v) for v in segment.evaluate_all("rs => rs.map(r => r.dataset.value)")) >= 1
    expect(page.locator("#usage-legend")).to_contain_text("qwen-image")
    page.get_by_label("Show").select_option("credits")
    expect(page.locator("#usage-chart svg")).to_have_attribute("data-measure", "credits")
    charged = segment.evaluate_all("rs => rs.map(r => Number(r.dataset.value))")
    assert sum(charged) >= task["final_credits"] > 0

    expect(page.locator("#usage-legend")).to_contain_text("grok-imagine")
    page.get_by_label("Show").select_option("tasks")
    expect(page.locator("#usage-chart rect[data-model='grok-imagine']")).to_have_attribute("data-value", "1")

    # the providers panel: the route that is down, its open circuit, its attempt and the failure
    page.locator("#providers-refresh").click()
    route = page.locator(f"#providers [data-provider='xai'] tr[data-route='grok-imagine {DOWN_ROUTE}']")
    expect(route.locator("td[data-label='Circuit']")).to_have_text("open")
    expect(route.locator("td[data-label='Live']")).to_have_text("live")
    expect(route.locator("td[data-label='Attempts']")).to_have_text("0 ok / 1 failed (upstream_unavailable 1)")
    expect(route.locator("td[data-label='Failed tasks']")).to_contain_text(failed["id"])
    expect(route.locator("td[data-label='Failed tasks']")).to_contain_text("upstream_unavailable")

    # the account's tasks: the succeeded one is refunded once
    page.get_by_role("button", name=f"Open {name}").click()
    row = page.locator(f"#tasks tr[data-task='{task['id']}']")
    row.get_by_role("button", name="Refund").click()
    page.get_by_role("button", name="Confirm refund").click()
    refunded = f"Refunded {task['final_credits']} credits of {task['id']}."
    expect(page.locator("#detail-status-line")).to_have_text(refunded)
    expect(page.locator("#ledger tr").first).to_contain_text("refund")
    expect(page.locator("#detail-balance")).to_have_text("500")

    # revoke (asked twice, no dialog): the key is refused from then on
    revoke = page.locator("#keys tr", has_text="backend").get_by_role("button", name="Revoke")
    revoke.click()
    page.get_by_role("button", name="Confirm revoke").click()
    expect(page.locator("#keys tr", has_text="backend").locator(".badge")).to_have_text("revoked")
    refused = httpx.get(f"{url}/api/v1/account", headers={"Authorization": f"Bearer {secret}"})
    assert refused.status_code == 401

    # disable and enable again
    page.locator("#toggle-disabled").click()
    expect(page.locator("#detail-status")).to_have_text("disabled")
    page.locator("#toggle-disabled").click()
    expect(page.locator("#detail-status")).to_have_text("active")

    # the audit log has every write, newest first, naming the account
    audit = page.locator("#audit tr", has_text=account_id)
    expect(audit.locator("td[data-label='Action']")).to_have_text(
        ["account.update", "account.update", "key.revoke", "task.refund", "key.create", "account.grant",
         "account.create"])
    assert authorized and all(u.startswith(url + "/admin/v1/") for u in authorized)
    page.locator("#account-search").fill(name)
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#accounts tr")).to_have_count(1)
    page.screenshot(path=str(shots / "console.png"), full_page=True)


def test_phone_screen_with_the_key_from_a_link(browser: Any, server: tuple[str, str], shots: Path) -> None:
    url, _ = server
    made, tab, errors = new_tab(browser, url, viewport={"width": 390, "height": 844}, is_mobile=True,
                                has_touch=True, device_scale_factor=2)
    try:
        tab.goto(f"/console#key={ADMIN_KEY}")
        expect(tab.locator("#key-status")).to_have_text("Signed in.")
        assert "#key" not in tab.url  # taken out of the address bar at once
        create_account(tab, f"phone-{secrets.token_hex(3)}", credits=120)
        tab.locator("#key-name").fill("phone")
        tab.get_by_role("button", name="Issue key").click()
        expect(tab.locator("#new-secret")).to_be_visible()
        expect(tab.locator("#audit tr").first).to_be_visible()
        expect(tab.locator("#usage-chart svg")).to_be_visible()
        assert tab.evaluate("innerWidth") == 390
        assert tab.evaluate("document.documentElement.scrollWidth") <= 390
        assert tab.evaluate(PAST_THE_RIGHT_EDGE) == []
        # each table row is a card: the cells stack, each with its heading
        cell = tab.locator("#keys tr").first.locator("td").nth(1)
        assert cell.evaluate("td => getComputedStyle(td).display") == "block"
        assert cell.get_attribute("data-label") == "Key"
        tab.locator("#detail-heading").evaluate("e => e.scrollIntoView({block: 'start', behavior: 'instant'})")
        tab.wait_for_timeout(300)  # let a smooth scroll the page began settle
        tab.locator("#detail-heading").evaluate("e => e.scrollIntoView({block: 'start', behavior: 'instant'})")
        tab.screenshot(path=str(shots / "console-phone.png"), full_page=False)
        assert errors == []
    finally:
        made.close()
