"""Which webhook URLs are accepted, and which address a webhook connects to.

The URL is the client's, so the server connecting to it is a server-side request on a client's
behalf: by default only public addresses are reached (no loopback, private, link-local, shared,
reserved or cloud-metadata addresses, nor IPv6 forms that embed one). Every decision is taken on
exactly what the HTTP client will act on:

- the URL is parsed by ``yarl``, the library ``aiohttp`` sends with, and its host (after the
  IDNA/UTS-46 mapping yarl applies) must be the plain-ASCII text that was given: ``127。0。0。1``,
  fullwidth digits (U+FF11...) or ``127.0.0.¹`` all *map* to ``127.0.0.1``, so they are refused, not checked
  as names and then connected to as addresses;
- a host whose last label is a number is an IPv4 address in some notation (decimal
  ``2130706433``, octal ``0177.0.0.1``, hex ``0x7f.1``, shortened ``127.1``): only the canonical
  dotted quad is accepted, and then only a public one;
- a name is resolved once per attempt (:func:`resolve`), every address it gives must be public,
  and the connection is made to that checked address, so the name cannot change in between.

``SFUMATO_WEBHOOK_ALLOW_PRIVATE`` lifts the public-address rule (for a private network); the
rules on how a URL is written stay.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from yarl import URL

MAX_URL = 2048
_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")
_HEX_OR_DIGITS = re.compile(r"(0x[0-9a-f]*|[0-9]+)")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_REFUSED_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "198.18.0.0/15",  # this network, shared, IETF, benchmark
    "::/96", "64:ff9b:1::/48", "fec0::/10", "2001::/32",  # IPv4-compatible, local NAT64, site-local, Teredo
))

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UrlRefused(ValueError):
    """A webhook URL that is not sent to; the message is the client's explanation."""


@dataclass(frozen=True, slots=True)
class Target:
    """A checked webhook URL: what the client connects to and what it says it is."""

    url: URL
    host: str
    """ASCII, lower case, without brackets: the name sent as ``Host`` and for TLS."""
    port: int
    literal: IPAddress | None
    """The address, when the URL names one."""

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.url.is_default_port() else f"{host}:{self.port}"

    def connect_url(self, address: IPAddress) -> URL:
        """The URL with ``address`` in place of the host: connecting to it resolves nothing."""
        return self.url.with_host(str(address))


def public_address(address: str | IPAddress) -> bool:
    """Whether a webhook may connect to this IP address without ``allow_private``."""
    try:
        ip = address if not isinstance(address, str) else ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if "%" in str(address):
            return False  # a scoped (link-local) address
        embedded = ip.ipv4_mapped or ip.sixtofour
        if ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return public_address(embedded)
    if any(ip.version == net.version and ip in net for net in _REFUSED_NETWORKS):
        return False
    return ip.is_global and not ip.is_multicast


def _ipv4_notation(host: str) -> bool:
    """Whether the host is an IPv4 address in some notation: its last label is a number
    (the WHATWG URL standard's "ends in a number" rule, which browsers and resolvers follow)."""
    labels = host.rstrip(".").split(".")
    return bool(labels) and _HEX_OR_DIGITS.fullmatch(labels[-1]) is not None


def _host(raw_host: str, normalised: str) -> tuple[str, IPAddress | None]:
    """The host as given, checked against what the client derives from it."""
    if raw_host.startswith("["):
        if "%" in raw_host:
            raise UrlRefused("A webhook URL must not carry an IPv6 zone.")
        try:
            return normalised, ipaddress.IPv6Address(raw_host.strip("[]"))
        except ValueError:
            raise UrlRefused("Not a valid IPv6 address.") from None
    given = raw_host.lower()
    if not given.isascii() or given != normalised or not _NAME.fullmatch(given):
        raise UrlRefused("A webhook URL's host must be written in plain ASCII as it is resolved "
                         "(letters, digits, '-', '.'; an international name in its xn-- form).")
    if _ipv4_notation(given):
        try:
            address = ipaddress.IPv4Address(given)
        except ValueError:
            raise UrlRefused("An IPv4 address must be written as four decimal numbers (a.b.c.d).") from None
        return given, address
    return given, None


def parse(url: object) -> Target:
    """Check how ``url`` is written and return what it points at; raise :class:`UrlRefused`."""
    if not isinstance(url, str) or not url:
        raise UrlRefused("A webhook URL must be a non-empty string.")
    if len(url) > MAX_URL:
        raise UrlRefused(f"A webhook URL is limited to {MAX_URL} characters.")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url) or "\\" in url:
        raise UrlRefused("A webhook URL must not contain spaces, control characters or backslashes.")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a bad port)
        parsed = URL(url)
    except ValueError:
        raise UrlRefused("Not a valid URL.") from None
    if parts.scheme not in ("https", "http") or not parts.netloc or not parsed.raw_host:
        raise UrlRefused("A webhook URL must be an absolute http(s) URL.")
    if "@" in parts.netloc:
        raise UrlRefused("A webhook URL must not carry credentials.")
    raw_host = parts.netloc.rsplit(":", 1)[0] if not parts.netloc.endswith("]") else parts.netloc
    host, literal = _host(raw_host, parsed.raw_host)
    assert parsed.port is not None  # http(s) always has one
    return Target(parsed, host, parsed.port, literal)


def problem(url: object) -> str | None:
    """What is wrong with how ``url`` is written as a webhook URL, or ``None``."""
    try:
        parse(url)
    except UrlRefused as exc:
        return str(exc)
    return None


def destination_problem(url: str, allow_private: bool) -> str | None:
    """A refusal known from the URL alone (this host, or an address that is not public), or ``None``."""
    try:
        target = parse(url)
    except UrlRefused as exc:
        return str(exc)
    if allow_private:
        return None
    name = target.host.rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return "A webhook URL must not point at this server's own host."
    if target.literal is not None and not public_address(target.literal):
        return "A webhook URL must point at a public address."
    return None  # a name: checked on what it resolves to, at each attempt


async def resolve(target: Target, allow_private: bool) -> list[IPAddress]:
    """The addresses to connect to for ``target``, each checked; raise :class:`UrlRefused`
    (this attempt fails) when the name gives none, or gives any address that is not public."""
    if target.literal is not None:
        found: list[IPAddress] = [target.literal]
    else:
        infos = await asyncio.get_running_loop().getaddrinfo(
            target.host, target.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        found = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos))
    if not found:
        raise UrlRefused(f"{target.host} resolves to no address")
    if not allow_private and not all(public_address(a) for a in found):
        raise UrlRefused(f"{target.host} resolves to an address that is not public")
    return found
