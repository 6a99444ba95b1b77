"""API key format: ``sk-sf_`` + 40 random base62 characters + a 6-character checksum.

Only a SHA-256 of the key is stored (the key has ~238 random bits, so a fast hash is enough),
with a short display prefix and the last four characters. The checksum lets a mistyped or
made-up key be refused without touching the database.
"""

from __future__ import annotations

import hashlib
import secrets
import string
import zlib

PREFIX = "sk-sf_"
ALPHABET = string.digits + string.ascii_letters
BODY_LEN = 40
CHECK_LEN = 6
DISPLAY_LEN = len(PREFIX) + 6


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, rem = divmod(number, 62)
        chars.append(ALPHABET[rem])
    return "".join(reversed(chars))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), CHECK_LEN)


def generate() -> str:
    body = "".join(secrets.choice(ALPHABET) for _ in range(BODY_LEN))
    return PREFIX + body + _checksum(body)


def well_formed(key: str) -> bool:
    if len(key) != len(PREFIX) + BODY_LEN + CHECK_LEN or not key.startswith(PREFIX):
        return False
    body, check = key[len(PREFIX) : -CHECK_LEN], key[-CHECK_LEN:]
    return all(c in ALPHABET for c in body) and secrets.compare_digest(check, _checksum(body))


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    return key[:DISPLAY_LEN]
