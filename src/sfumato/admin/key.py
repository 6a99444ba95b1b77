"""The operator's key: ``SFUMATO_ADMIN_KEY``, or one generated into the data dir (mode 0600)
the first time it is needed and printed by ``sfumato admin-key``, like the demo key.

Imports nothing heavy: ``sfumato admin-key`` only reads (or makes) the file.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sfumato.settings import Settings

KEY_FILE = "admin_key"
PREFIX = "sk-admin_"
"""Not the customer keys' ``sk-sf_``: a customer key check refuses it without a query."""


def admin_key(settings: Settings) -> str:
    """The admin key, generating and keeping it if it is not configured."""
    if settings.admin_key:
        return settings.admin_key
    path = settings.data_dir / KEY_FILE
    if not path.exists():
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(PREFIX + secrets.token_urlsafe(32) + "\n")
        try:
            os.link(tmp, path)  # never replaces a key another process made meanwhile
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


def digest(key: str) -> bytes:
    """What a presented key is compared with, in constant time (equal lengths by construction)."""
    return hashlib.sha256(key.encode()).hexdigest().encode()
