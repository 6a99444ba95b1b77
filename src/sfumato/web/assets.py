"""The static files the pages serve (``static/``), each page's by name only: no path is ever
joined from input, and a name a page does not list is a 404."""

from __future__ import annotations

from pathlib import Path

from fastapi.responses import FileResponse

from sfumato.errors import NotFound

STATIC = Path(__file__).with_name("static")
MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".ico": "image/x-icon"}
SHIPPED = {path.name: path for path in STATIC.iterdir() if path.suffix in MEDIA_TYPES}
"""Every file that ships in ``static/``, by name."""


def asset_file(assets: dict[str, Path], name: str, page: str) -> FileResponse:
    """``name`` from a page's ``assets``, revalidated on each use (``no-cache``)."""
    path = assets.get(name)
    if path is None:
        raise NotFound(f"No {page} asset {name[:100]!r}.")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix],
                        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})
