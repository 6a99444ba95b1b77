"""What the API answers, as typed objects. Unknown fields are kept (``extra="allow"``): a newer
server may add some, and an older client must not break on them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

TaskStatus = Literal["queued", "running", "succeeded", "failed", "canceled"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "canceled"})
EXTENSIONS: dict[str, str] = {
    "image/png": "png", "image/jpeg": "jpg", "image/webp": "webp",
    "video/mp4": "mp4", "video/webm": "webm",
    "audio/mp4": "m4a", "audio/mpeg": "mp3", "audio/wav": "wav", "audio/ogg": "ogg", "audio/flac": "flac",
}
"""The file name extension of each media type, as the server names its files (the client does not
import the server's ``files.outputs``, which pulls in the database layer; a test keeps the two equal)."""


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Media(_Answer):
    url: str
    kind: str
    name: str
    mimeType: str
    width: int | None = None
    height: int | None = None
    bytes: int | None = None

    def as_reference(self) -> dict[str, Any]:
        """This output as a ``referenceMediaItems`` entry (outputs chain without re-upload)."""
        return {"url": self.url, "kind": self.kind, "name": self.name, "mimeType": self.mimeType}


class TaskResult(_Answer):
    media: list[Media]
    provider: str | None = None
    sandbox: bool | None = None


class TaskError(_Answer):
    code: str
    message: str


class Task(_Answer):
    id: str
    status: TaskStatus
    model: str
    reserved_credits: int
    final_credits: int
    created_at: str
    updated_at: str
    result: TaskResult | None = None
    error: TaskError | None = None

    @property
    def done(self) -> bool:
        return self.status in TERMINAL


class File(_Answer):
    id: str
    url: str
    kind: str
    name: str
    mimeType: str
    bytes: int
    width: int | None = None
    height: int | None = None
    purpose: str
    created_at: str
    expires_at: str | None = None
    duration_seconds: float | None = None
    durationToken: str | None = None

    def as_reference(self) -> dict[str, Any]:
        """This upload as a ``referenceMediaItems`` entry."""
        item = {"url": self.url, "kind": self.kind, "name": self.name, "mimeType": self.mimeType}
        if self.durationToken is not None:
            item["durationToken"] = self.durationToken
        return item


class Model(_Answer):
    id: str
    name: str
    base_credits: int
    inputs: list[str]
    params: list[dict[str, Any]] = []
    effective_prompt_max_chars: int | None = None


class Account(_Answer):
    id: str
    name: str
    balance: int
