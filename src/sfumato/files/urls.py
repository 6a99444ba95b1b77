"""Signed, expiring media URLs: HMAC-SHA256 over (file id, expiry).

The URL path carries the file id, so a signature for one file never opens another. The MAC
holds nothing that has to be looked up (file ids are server-made and never reused), so the
content route verifies a link before it reads the database: a bad link answers the same
whether its file exists or not, and costs no query.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import datetime
from urllib.parse import urlencode, urlsplit

CONTENT_PATH = "/api/v1/files/{file_id}/content"
_CANONICAL_NUMBER = re.compile(r"0|[1-9][0-9]{0,12}")
"""ASCII base-10 digits as ``str(int)`` writes them: no sign, leading zero, fraction or space.
A signed number is accepted in this one spelling only, so one link or token has one form."""
_FILE_IN_PATH = re.compile(r"/api/v1/files/(file_[0-9a-f]{32})(?:/content)?/?$")


class MediaSigner:
    def __init__(self, secret: bytes):
        self._secret = secret

    def _mac(self, message: str) -> str:
        digest = hmac.new(self._secret, message.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def _link_mac(self, file_id: str, expires: int) -> str:
        return self._mac(f"v2:{file_id}:{expires}")

    def url(self, base_url: str, file_id: str, account_id: str, expires_at: datetime) -> str:
        """The signed content URL. ``account_id`` is not signed (the id alone names the file);
        the parameter stays so that callers (``api/schemas.py``) need not change."""
        del account_id
        expires = int(expires_at.timestamp())
        query = urlencode({"expires": expires, "signature": self._link_mac(file_id, expires)})
        return f"{base_url.rstrip('/')}{CONTENT_PATH.format(file_id=file_id)}?{query}"

    def verify(self, file_id: str, expires: str, signature: str, now: datetime) -> bool:
        """True only for the exact query ``url`` wrote for this file, before its expiry. ``expires``
        is the raw query value: any other spelling of the same number (``0…``, ``+…``, ``….0``)
        is refused rather than parsed."""
        if not _CANONICAL_NUMBER.fullmatch(expires):
            return False
        # Compared as bytes: compare_digest refuses non-ASCII str, and a URL may carry anything.
        if not hmac.compare_digest(signature.encode(), self._link_mac(file_id, int(expires)).encode()):
            return False
        return int(expires) >= now.timestamp()

    def duration_token(self, file_id: str, account_id: str, duration_ms: int, expires_at: datetime) -> str:
        """A signed claim "this file of this account lasts ``duration_ms``", valid until ``expires_at``."""
        expires = int(expires_at.timestamp())
        mac = self._mac(f"v1:{file_id}:{account_id}:duration:{duration_ms}:{expires}")
        return f"dt1.{duration_ms}.{expires}.{mac}"

    def verify_duration_token(self, token: str, file_id: str, account_id: str, duration_ms: int,
                              now: datetime) -> bool:
        """True only for a token this server signed for exactly this file, account and duration."""
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != "dt1" or not all(map(_CANONICAL_NUMBER.fullmatch, parts[1:3])):
            return False
        if int(parts[1]) != duration_ms or int(parts[2]) < now.timestamp():
            return False
        expected = self._mac(f"v1:{file_id}:{account_id}:duration:{duration_ms}:{int(parts[2])}")
        return hmac.compare_digest(parts[3].encode(), expected.encode())


def file_id_from_url(url: str) -> str | None:
    """The file id in a media URL this server issued (any host: proxies rewrite it), or None."""
    try:
        path = urlsplit(url).path
    except ValueError:
        return None
    match = _FILE_IN_PATH.search(path)
    return match.group(1) if match else None
