"""Where bytes live. ``Storage`` is the interface; ``LocalStorage`` the embedded default,
``S3Storage`` (``storage/s3.py``) object storage."""

from sfumato.storage.base import Storage, StoredKey
from sfumato.storage.local import LocalStorage

__all__ = ["LocalStorage", "Storage", "StoredKey"]
