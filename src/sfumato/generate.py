"""``sfumato generate``: create a task through the Python client (``sfumato.Client``), follow it
with a live status line, and save its images."""

from __future__ import annotations

from pathlib import Path

import httpx
from rich.console import Console

from sfumato.client import Client, SfumatoClientError, Task
from sfumato.client.types import EXTENSIONS


class GenerateError(Exception):
    pass


_KNOWN_SUFFIXES = {f".{ext}" for ext in EXTENSIONS.values()} | {".jpeg"}


def _target(output: Path | None, task_id: str, index: int, count: int, mime: str) -> tuple[Path, str | None]:
    """Where to save image ``index`` of ``count``, and a note when the name had to change: a
    suffix naming another format is corrected (a JPEG is never saved as ``.png``), a missing one
    added. An unknown suffix is kept as the user wrote it."""
    ext = EXTENSIONS.get(mime, "bin")
    if output is None:
        return Path(f"{task_id}-{index}.{ext}" if count > 1 else f"{task_id}.{ext}"), None
    asked = output.suffix.lower()
    path = output if count == 1 else output.with_name(f"{output.stem}-{index}{output.suffix}")
    if asked == f".{ext}" or (asked == ".jpeg" and ext == "jpg"):
        return path, None
    if not asked:
        return path.with_name(f"{path.name}.{ext}"), None
    if asked in _KNOWN_SUFFIXES:
        fixed = path.with_suffix(f".{ext}")
        return fixed, f"saved as {fixed}: the image is {mime}, not {asked.lstrip('.')}"
    return path, None


def _run(client: Client, model: str, prompt: str, params: dict[str, str], output: Path | None,
         timeout: float, console: Console) -> list[Path]:
    created = client.create(model, prompt, params)
    console.print(f"task {created.id} queued, {created.reserved_credits} credits reserved")
    with console.status(f"{created.id} {created.status}…") as status:
        task: Task = client.wait(created, timeout=timeout,
                                 on_update=lambda t: status.update(f"{t.id} {t.status}…"))
    assert task.result is not None  # wait() raises unless the task succeeded
    media = task.result.media
    saved = []
    for index, item in enumerate(media):
        path, note = _target(output, task.id, index, len(media), item.mimeType)
        if note:
            console.print(f"[yellow]{note}[/yellow]")
        client.download(item, path)
        saved.append(path)
    note = " (sandbox)" if task.result.sandbox else ""
    console.print(f"succeeded{note}: {task.final_credits} credits charged, "
                  f"{media[0].width}x{media[0].height} {media[0].mimeType}")
    return saved


def run_generate(
    base_url: str, api_key: str, model: str, prompt: str, params: dict[str, str],
    output: Path | None, timeout: float, console: Console,
) -> list[Path]:
    try:
        with Client(base_url, api_key) as client:
            return _run(client, model, prompt, params, output, timeout, console)
    except httpx.HTTPError as exc:
        raise GenerateError(f"cannot reach {base_url}: {exc}") from exc
    except SfumatoClientError as exc:
        raise GenerateError(str(exc)) from exc
