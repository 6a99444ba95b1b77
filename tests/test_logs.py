"""A task carries the id of the request that created it into the worker, the provider call
and every log line about it."""

from __future__ import annotations

import json
import logging

import pytest
from sqlalchemy import select

from sfumato import logs
from sfumato.db.models import Task
from sfumato.providers.base import Job, Outputs
from sfumato.providers.registry import ProviderRegistry
from sfumato.providers.sandbox import SandboxProvider
from tests.conftest import new_customer, serve
from tests.helpers import create, wait_for_task


class RecordingProvider(SandboxProvider):
    def __init__(self) -> None:
        super().__init__((0, 0))
        self.jobs: list[Job] = []

    async def run(self, job: Job) -> Outputs:
        self.jobs.append(job)
        logging.getLogger("sfumato.test").info("provider called")
        return await super().run(job)


async def test_the_creating_request_id_follows_the_task_to_the_provider(make_deps, caplog) -> None:
    deps = await make_deps()
    provider = RecordingProvider()
    deps.providers = ProviderRegistry(provider)
    who = await new_customer(deps)
    handler_filter = logs.ContextFilter()
    caplog.handler.addFilter(handler_filter)
    with caplog.at_level(logging.INFO, logger="sfumato.test"):
        async with serve(deps) as client:
            created = await create(client, who, model="qwen-image")
            await wait_for_task(client, who, created.json()["id"])
    request_id = created.headers["x-request-id"]
    async with deps.db.read() as session:
        stored = await session.scalar(select(Task.request_id).where(Task.id == created.json()["id"]))
    assert stored == request_id
    assert [job.request_id for job in provider.jobs] == [request_id]
    [record] = [r for r in caplog.records if r.getMessage() == "provider called"]
    assert (record.request_id, record.task_id) == (request_id, created.json()["id"])


def test_json_logs_carry_the_ids(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("json")
    try:
        request_token, task_token = logs.request_id.set("req_abc"), logs.task_id.set("task_xyz")
        logging.getLogger("sfumato.worker").warning("lease lost")
        logs.request_id.reset(request_token)
        logs.task_id.reset(task_token)
    finally:
        logging.getLogger().handlers.clear()
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert {k: line[k] for k in ("level", "logger", "message", "request_id", "task_id")} == {
        "level": "WARNING", "logger": "sfumato.worker", "message": "lease lost",
        "request_id": "req_abc", "task_id": "task_xyz"}
