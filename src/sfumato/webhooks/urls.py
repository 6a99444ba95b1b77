"""Which webhook URLs are accepted, and where a webhook may connect.

The URL is the client's, so the server connecting to it is a server-side request on a
client's behalf: by default only public addresses are reached (no loopback, private, link-local
or cloud metadata addresses), checked on the addresses the name resolves to at send time, not
only on the URL's text. ``SFUMATO_WEBHOOK_ALLOW_PRIVATE`` lifts that for a private network.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

MAX_URL = 2048


def problem(url: object) -> str | None:
    """What is wrong with ``url`` as a webhook URL (syntax only), or ``None``."""
    if not isinstance(url, str) or not url:
        return "A webhook URL must be a non-empty string."
    if len(url) > MAX_URL:
        return f"A webhook URL is limited to {MAX_URL} characters."
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        return "Not a valid URL."
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "A webhook URL must be an absolute http(s) URL."
    if parts.username or parts.password:
        return "A webhook URL must not carry credentials."
    return None


def public_address(address: str) -> bool:
    """Whether a webhook may connect to this IP address without ``allow_private``."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def destination_problem(url: str, allow_private: bool) -> str | None:
    """A refusal known from the URL alone (an IP literal that is not public), or ``None``."""
    host = urlsplit(url).hostname or ""
    if allow_private:
        return None
    if host == "localhost" or host.endswith(".localhost"):
        return "A webhook URL must not point at this server's own host."
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None  # a name: checked on what it resolves to, when sending
    return None if public_address(host) else "A webhook URL must point at a public address."
