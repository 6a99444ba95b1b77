"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import new_customer, serve
from tests.helpers import create, wait_for_task
from tests.test_rate_limit_shared import REDIS_URL, _redis_reachable


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_readyz_reports_each_dependency(make_deps) -> None:
    deps = await make_deps(run_worker=False)
    async with serve(deps) as client:
        ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"database": "ok", "storage": "ok"}}

    broken = await make_deps(run_worker=False, redis_url="redis://127.0.0.1:1/0")
    async with serve(broken) as client:
        not_ready = await client.get("/readyz")
    assert not_ready.status_code == 503
    assert not_ready.json()["checks"]["redis"].startswith("failed")
    if _redis_reachable():
        live = await make_deps(run_worker=False, redis_url=REDIS_URL)
        async with serve(live) as client:
            assert (await client.get("/readyz")).json()["checks"]["redis"] == "ok"


async def test_metrics_count_requests_tasks_credits_and_queue(deps, client: httpx.AsyncClient) -> None:
    who = await new_customer(deps)
    before = _samples((await client.get("/metrics")).text)
    task = await wait_for_task(client, who, (await create(client, who, model="google-imagen4")).json()["id"])
    assert task["status"] == "succeeded"
    after = _samples((await client.get("/metrics")).text)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("sfumato_tasks_created_total", model="google-imagen4") == 1
    assert delta("sfumato_tasks_ended_total", model="google-imagen4", status="succeeded") == 1
    assert delta("sfumato_credits_total", movement="reserved") == 8
    assert delta("sfumato_credits_total", movement="settled") == 8
    assert delta("sfumato_http_requests_total", method="POST", route="/api/v1/tasks", status="202") == 1
    assert delta("sfumato_http_requests_total", method="GET", route="/api/v1/tasks/{task_id}", status="200") >= 1
    assert delta("sfumato_provider_seconds_count", provider="sandbox", model="google-imagen4") == 1
    assert after[("sfumato_tasks_in_state", (("status", "queued"),))] == 0
