"""Fetching an upstream's output URL: only from the hosts the route allows, size-capped,
time-limited, with no redirects and no credentials (reliability §5: a provider's answer is not
trusted to name where sfumato connects, and keys go only to the provider's API host)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from sfumato.providers.base import OutputImage
from sfumato.providers.errors import UpstreamBadResponse, for_status
from sfumato.providers.http import UpstreamHttp
from sfumato.providers.images import decode_image


def _scheme_ok(scheme: str, host: str) -> bool:
    if scheme == "https":
        return True
    try:
        return scheme == "http" and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_allowed(url: str, allowed: tuple[str, ...]) -> bool:
    """``https`` to an allowed host (``host``, ``host:port`` or ``*.domain``); plain ``http``
    only to a loopback address that is itself allow-listed (a test fake, a local relay)."""
    try:
        parts = urlsplit(url)
        host, port = (parts.hostname or "").lower(), parts.port
    except ValueError:
        return False
    if parts.username or parts.password or not host or not _scheme_ok(parts.scheme, host):
        return False
    for entry in allowed:
        entry = entry.lower()
        if entry.startswith("*."):
            if host.endswith(entry[1:]) and port is None:
                return True
        elif entry in (host, f"{host}:{port}"):
            return True
    return False


async def fetch_image(http: UpstreamHttp, url: str, *, allowed: tuple[str, ...], max_bytes: int,
                      time_limit: float) -> OutputImage:
    """Download and decode one output image. The URL itself never leaves this function."""
    if not host_allowed(url, allowed):
        host = urlsplit(url).hostname if url.startswith(("http://", "https://")) else "?"
        raise UpstreamBadResponse(f"The upstream's output is on a host this route does not allow ({host}).")
    answer = await http.request("GET", url, time_limit=time_limit, max_bytes=max_bytes)
    if answer.status != 200:
        message = f"Downloading the upstream's output failed with HTTP {answer.status}."
        if answer.status == 429 or answer.status >= 500:
            raise for_status(answer.status, message, answer.retry_after)
        raise UpstreamBadResponse(message)  # gone, expired or a redirect: asking again won't help
    return await decode_image(answer.body)
