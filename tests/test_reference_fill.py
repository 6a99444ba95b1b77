"""A reference given as ``{"url": …}`` alone (issue 14, item 7): the server fills in ``kind`` and
``mimeType`` from the file it stored, refuses a given value that is not the file's, and still
refuses, as before and without saying anything of the file, a URL that is not one of the
account's own files."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import httpx
from PIL import Image
from sqlalchemy import select

from sfumato import ids
from sfumato.api.request_schemas import BUILTIN_CATALOG, task_create_body
from sfumato.db.models import StoredFile, Task
from sfumato.providers.base import Job, Outputs
from sfumato.providers.registry import ProviderRegistry
from sfumato.providers.sandbox import SandboxProvider
from tests.conftest import Customer, new_customer, serve
from tests.helpers import create, wait_for_task
from tests.money import audit

ITEMS = "params.referenceMediaItems[0]"


class RecordingProvider(SandboxProvider):
    def __init__(self) -> None:
        super().__init__((0, 0))
        self.jobs: list[Job] = []

    async def run(self, job: Job) -> Outputs:
        self.jobs.append(job)
        return await super().run(job)


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), "teal").save(buffer, "PNG")
    return buffer.getvalue()


async def upload(client: httpx.AsyncClient, who: Customer) -> dict[str, Any]:
    answer = await client.post("/api/v1/files", files={"file": ("a.png", png(), "image/png")}, headers=who.headers)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


async def edit(client: httpx.AsyncClient, who: Customer, *items: dict[str, Any]) -> httpx.Response:
    return await create(client, who, model="gpt-image-1-5", params={"referenceMediaItems": list(items)})


def fields(answer: httpx.Response) -> dict[str, str]:
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "validation_failed"
    return {d["field"]: d["message"] for d in answer.json()["error"]["details"]}


async def test_a_url_alone_is_resolved_with_the_files_own_kind_and_type(make_deps: Callable[..., Any]) -> None:
    deps = await make_deps()
    provider = RecordingProvider()
    deps.providers = ProviderRegistry(provider)
    async with serve(deps) as client:
        who = await new_customer(deps, credits=20)
        uploaded = await upload(client, who)
        alone = await edit(client, who, {"url": uploaded["url"]})
        kind_only = await edit(client, who, {"url": uploaded["url"], "kind": "image", "name": "mine.png"})
        tasks = [await wait_for_task(client, who, a.json()["id"]) for a in (alone, kind_only)]
    assert (alone.status_code, kind_only.status_code) == (202, 202), alone.text
    assert [t["status"] for t in tasks] == ["succeeded", "succeeded"]
    async with deps.db.read() as session:
        rows = list(await session.scalars(select(Task).where(Task.id.in_([t["id"] for t in tasks]))))
    assert [r.reference_file_ids for r in rows] == [[uploaded["id"]]] * 2
    refs = [job.references[0] for job in provider.jobs]
    assert [(r.file_id, r.kind, r.mime_type) for r in refs] == [(uploaded["id"], "image", "image/png")] * 2
    assert (await audit(deps, who.account_id)).balance == 20 - 2 * 4


async def test_a_kind_or_type_that_is_not_the_files_is_refused_by_name(make_deps: Callable[..., Any]) -> None:
    deps = await make_deps(run_worker=False)
    async with serve(deps) as client:
        who = await new_customer(deps, credits=20)
        url = (await upload(client, who))["url"]
        wrong_type = fields(await edit(client, who, {"url": url, "mimeType": "image/jpeg"}))
        wrong_both = fields(await edit(client, who, {"url": url, "kind": "image", "mimeType": "image/webp"}))
        empty = fields(await edit(client, who, {"url": url, "kind": ""}))
        not_taken = fields(await edit(client, who, {"url": url, "mimeType": "video/mp4"}))
    assert set(wrong_type) == {f"{ITEMS}.mimeType"} and "'image/png'" in wrong_type[f"{ITEMS}.mimeType"]
    assert set(wrong_both) == {f"{ITEMS}.mimeType"}
    assert set(empty) == {f"{ITEMS}.kind"} and "leave it out" in empty[f"{ITEMS}.kind"]
    assert set(not_taken) == {f"{ITEMS}.mimeType"}  # refused from the catalog alone, before the database
    assert (await audit(deps, who.account_id)).balance == 20  # nothing reserved


async def _stored_video(deps: Any, account_id: str) -> str:
    """A file of a kind gpt-image-1-5 does not take, as the Files API would keep it."""
    file_id = ids.file_id()
    async with deps.db.write() as session:
        session.add(StoredFile(id=file_id, account_id=account_id, purpose="upload", kind="video", name="v.mp4",
                               mime_type="video/mp4", bytes=1000, storage_key=f"uploads/{file_id}.mp4",
                               created_at=deps.clock.now(), duration_ms=1000))
    return f"http://sfumato.test/api/v1/files/{file_id}/content"


async def test_the_files_own_kind_must_be_one_the_model_takes(make_deps: Callable[..., Any]) -> None:
    deps = await make_deps(run_worker=False)
    async with serve(deps) as client:
        who = await new_customer(deps, credits=20)
        video = await _stored_video(deps, who.account_id)
        alone = fields(await edit(client, who, {"url": video}))
        claimed = fields(await edit(client, who, {"url": video, "kind": "image", "mimeType": "image/png"}))
    assert set(alone) == {f"{ITEMS}.url"} and "'video'" in alone[f"{ITEMS}.url"]
    assert set(claimed) == {f"{ITEMS}.kind", f"{ITEMS}.mimeType"}  # each given value that is not the file's
    assert (await audit(deps, who.account_id)).balance == 20


async def test_urls_not_of_the_accounts_files_are_refused_as_before_and_say_nothing(
        make_deps: Callable[..., Any]) -> None:
    deps = await make_deps(run_worker=False)
    async with serve(deps) as client:
        who, other = await new_customer(deps, credits=20), await new_customer(deps, credits=20, name="other")
        theirs = (await upload(client, other))["url"]
        unknown = f"http://sfumato.test/api/v1/files/{ids.file_id()}/content"
        answers = {
            "foreign": await edit(client, who, {"url": "https://example.com/reference-image.png"}),
            "theirs": await edit(client, who, {"url": theirs}),
            "theirs, wrong type": await edit(client, who, {"url": theirs, "mimeType": "image/webp"}),
            "unknown": await edit(client, who, {"url": unknown}),
        }
    bodies = {name: answer.json()["error"] for name, answer in answers.items()}
    assert {name: fields(answer).keys() for name, answer in answers.items()} == {
        name: {f"{ITEMS}.url"} for name in answers}
    assert bodies["theirs"] == bodies["unknown"] == bodies["theirs, wrong type"] == bodies["foreign"]
    assert "image/png" not in str(bodies) and "kind" not in bodies["theirs"]["details"][0]["message"]
    assert (await audit(deps, who.account_id)).balance == 20


def test_the_documented_reference_item_needs_only_the_url() -> None:
    [branch] = [b for b in task_create_body(BUILTIN_CATALOG, 1000)["oneOf"] if b["title"] == "gpt-image-1-5"]
    item = branch["properties"]["params"]["properties"]["referenceMediaItems"]["items"]
    assert item["required"] == ["url"]
