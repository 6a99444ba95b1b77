"""The local spool directory uploads arrive in, whichever backend keeps the finished bytes."""

from __future__ import annotations

import contextlib
import time
from datetime import timedelta
from pathlib import Path


def sweep(directory: Path, older_than: timedelta) -> int:
    """Remove spool files untouched for ``older_than`` (left by a server stopped mid-upload).
    File times are the file system's wall clock, so this compares with that, not deps.clock."""
    cutoff, removed = time.time() - older_than.total_seconds(), 0
    for path in directory.glob("upload-*.part"):
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
    return removed
