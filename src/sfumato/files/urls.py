"""Signed, expiring media URLs: HMAC-SHA256 over (file id, account id, expiry).

The URL path carries the file id, so a signature for one file never opens another, and the
account is in the MAC, so a file moved between accounts (it never is) would not verify either.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import datetime
from urllib.parse import urlencode, urlsplit

CONTENT_PATH = "/api/v1/files/{file_id}/content"
_FILE_IN_PATH = re.compile(r"/api/v1/files/(file_[0-9a-f]{32})(?:/content)?/?$")


class MediaSigner:
    def __init__(self, secret: bytes):
        self._secret = secret

    def _mac(self, file_id: str, account_id: str, expires: int) -> str:
        message = f"v1:{file_id}:{account_id}:{expires}".encode()
        digest = hmac.new(self._secret, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def url(self, base_url: str, file_id: str, account_id: str, expires_at: datetime) -> str:
        expires = int(expires_at.timestamp())
        query = urlencode({"expires": expires, "signature": self._mac(file_id, account_id, expires)})
        return f"{base_url.rstrip('/')}{CONTENT_PATH.format(file_id=file_id)}?{query}"

    def verify(self, file_id: str, account_id: str, expires: int, signature: str, now: datetime) -> bool:
        if expires < now.timestamp():
            return False
        # Compared as bytes: compare_digest refuses non-ASCII str, and a URL may carry anything.
        return hmac.compare_digest(signature.encode(), self._mac(file_id, account_id, expires).encode())


    def duration_token(self, file_id: str, account_id: str, duration_ms: int, expires_at: datetime) -> str:
        """A signed claim "this file of this account lasts ``duration_ms``", valid until ``expires_at``."""
        expires = int(expires_at.timestamp())
        mac = self._mac(file_id, f"{account_id}:duration:{duration_ms}", expires)
        return f"dt1.{duration_ms}.{expires}.{mac}"

    def verify_duration_token(self, token: str, file_id: str, account_id: str, duration_ms: int,
                              now: datetime) -> bool:
        """True only for a token this server signed for exactly this file, account and duration."""
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != "dt1" or not parts[1].isdigit() or not parts[2].isdigit():
            return False
        if int(parts[1]) != duration_ms or int(parts[2]) < now.timestamp():
            return False
        expected = self._mac(file_id, f"{account_id}:duration:{duration_ms}", int(parts[2]))
        return hmac.compare_digest(parts[3].encode(), expected.encode())


def file_id_from_url(url: str) -> str | None:
    """The file id in a media URL this server issued (any host: proxies rewrite it), or None."""
    try:
        path = urlsplit(url).path
    except ValueError:
        return None
    match = _FILE_IN_PATH.search(path)
    return match.group(1) if match else None
