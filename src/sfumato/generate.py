"""``sfumato generate``: a small HTTP client of the task API with a live status line."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from sfumato.files.outputs import EXTENSIONS

TERMINAL = ("succeeded", "failed", "canceled")


class GenerateError(Exception):
    pass


def _explain(response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}: {response.text[:300]}"
    lines = [f"{error['code']}: {error['message']}"]
    lines += [f"  {d['field']}: {d['message']}" for d in error.get("details", [])]
    return "\n".join(lines)


def _wait(client: httpx.Client, task: dict[str, Any], timeout: float, console: Console) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with console.status(f"{task['id']} {task['status']}…") as status:
        while task["status"] not in TERMINAL:
            if time.monotonic() > deadline:
                raise GenerateError(f"task {task['id']} still {task['status']} after {timeout:g} s")
            time.sleep(0.25)
            response = client.get(f"/api/v1/tasks/{task['id']}")
            if response.status_code != 200:
                raise GenerateError(_explain(response))
            task = response.json()
            status.update(f"{task['id']} {task['status']}…")
    return task


def _target(output: Path | None, task_id: str, index: int, count: int, mime: str) -> Path:
    ext = EXTENSIONS.get(mime, "bin")
    if output is None:
        return Path(f"{task_id}-{index}.{ext}" if count > 1 else f"{task_id}.{ext}")
    if count == 1:
        return output
    return output.with_name(f"{output.stem}-{index}{output.suffix or '.' + ext}")


def run_generate(
    base_url: str, api_key: str, model: str, prompt: str, params: dict[str, str],
    output: Path | None, timeout: float, console: Console,
) -> list[Path]:
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30.0) as client:
        try:
            response = client.post("/api/v1/tasks", json={"model": model, "prompt": prompt, "params": params})
        except httpx.HTTPError as exc:
            raise GenerateError(f"cannot reach {base_url}: {exc}") from exc
        if response.status_code not in (200, 202):
            raise GenerateError(_explain(response))
        created = response.json()
        console.print(f"task {created['id']} queued, {created['reserved_credits']} credits reserved")
        task = _wait(client, created, timeout, console)
        if task["status"] != "succeeded":
            error = task.get("error") or {}
            raise GenerateError(f"task {task['status']}: {error.get('code')}: {error.get('message')}")
        media = task["result"]["media"]
        saved = []
        for index, item in enumerate(media):
            download = client.get(item["url"])
            if download.status_code != 200:
                raise GenerateError(_explain(download))
            path = _target(output, task["id"], index, len(media), item["mimeType"])
            path.write_bytes(download.content)
            saved.append(path)
        note = " (sandbox)" if task["result"].get("sandbox") else ""
        console.print(f"succeeded{note}: {task['final_credits']} credits charged, "
                      f"{media[0]['width']}x{media[0]['height']} {media[0]['mimeType']}")
        return saved
