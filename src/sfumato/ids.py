"""Public identifiers: a type prefix and 128 random bits, never sequential."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


def task_id() -> str:
    return new_id("task")


def account_id() -> str:
    return new_id("acct")


def file_id() -> str:
    return new_id("file")


def key_id() -> str:
    return new_id("key")


def request_id() -> str:
    return new_id("req")
