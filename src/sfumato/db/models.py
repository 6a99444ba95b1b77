"""The tables. Invariants the database can hold, it holds (CHECKs and UNIQUEs)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sfumato.db.types import JSONType, UTCDateTime

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Account(Base):
    __tablename__ = "accounts"
    __table_args__ = (CheckConstraint("balance >= 0", name="balance_not_negative"), UniqueConstraint("name"))

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    """Unique: the CLI and the operator find an account by it."""
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    webhook_url: Mapped[str | None] = mapped_column(Text)
    """Where the account's tasks are POSTed when they end, unless a task names its own URL."""
    webhook_secret: Mapped[str | None] = mapped_column(String(100))
    """``whsec_…``: signs the account's webhooks (Standard Webhooks). Made on first use."""
    queue_key: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    """The queue turn of this account's latest normal task (``tasks/queue.py``)."""
    low_queue_key: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    """The queue turn of this account's latest low-priority task."""
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    """Set by an operator: the account's keys are refused (401) and it can start nothing."""


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint("credit_period IN ('day', 'month')", name="credit_period"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    last4: Mapped[str] = mapped_column(String(4))
    name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    """Refused (401) from then on, like a revoked key."""
    models: Mapped[list[str] | None] = mapped_column(JSONType)
    """The model ids this key may create tasks on (``None``: all); others are 403 ``forbidden``."""
    rate_limit: Mapped[str | None] = mapped_column(String(40))
    """This key's create limit (``60/minute``) instead of ``SFUMATO_RATE_LIMIT_CREATE``."""
    credit_limit: Mapped[int | None] = mapped_column(BigInteger)
    """Most credits the key's tasks may take per ``credit_period`` (reserved minus given back),
    checked in the reservation's transaction (``billing/budget.py``)."""
    credit_period: Mapped[str | None] = mapped_column(String(8))
    """``day`` or ``month`` (UTC), with ``credit_limit``."""


LEDGER_KINDS = ("grant", "reserve", "settle", "release", "refund")


class LedgerEntry(Base):
    """Append-only. ``amount`` is the change to the account's balance; their sum is the balance."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        UniqueConstraint("task_id", "kind"),
        UniqueConstraint("account_id", "idempotency_key"),
        CheckConstraint("kind IN ('grant', 'reserve', 'settle', 'release', 'refund')", name="kind"),
        CheckConstraint("balance_after >= 0", name="balance_after_not_negative"),
        Index(None, "account_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    task_id: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    note: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    """An operator's grant: the same key again grants nothing (``UNIQUE (account_id, key)``)."""


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'canceled')", name="status"
        ),
        CheckConstraint("final_credits <= reserved_credits", name="final_within_reserved"),
        CheckConstraint("priority IN ('normal', 'low')", name="priority"),
        Index(None, "status", "queue_key", "created_at"),
        Index(None, "status", "lease_expires_at"),
        Index(None, "status", "deadline_at", postgresql_where=text("deadline_at IS NOT NULL"),
              sqlite_where=text("deadline_at IS NOT NULL")),
        Index(None, "account_id", "created_at", "id"),
        Index(None, "budget_key_id", "created_at", postgresql_where=text("budget_key_id IS NOT NULL"),
              sqlite_where=text("budget_key_id IS NOT NULL")),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    model: Mapped[str] = mapped_column(String(64))
    prompt: Mapped[str] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(JSONType)
    reference_file_ids: Mapped[list[str]] = mapped_column(JSONType, default=list)
    request_id: Mapped[str | None] = mapped_column(String(64))
    """The API request that created the task: its logs in the worker carry it too."""
    status: Mapped[str] = mapped_column(String(16))
    reserved_credits: Mapped[int] = mapped_column(BigInteger)
    final_credits: Mapped[int] = mapped_column(BigInteger, default=0)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_token: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    """This task's own webhook URL (else the account's, if any)."""
    upstream_state: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    """What an asynchronous upstream handed back on submit (route, request id, poll URLs): a
    worker that takes the task over after a crash polls that request instead of submitting
    again. Internal; never shown to the client."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    priority: Mapped[str] = mapped_column(String(8), default="normal", server_default="normal")
    """``normal`` or ``low``: a low task's turn is ``SFUMATO_LOW_PRIORITY_AGEING`` turns behind
    (``tasks/queue.py``)."""
    deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    """``Cancel-After``: past it the task ends ``canceled`` (``deadline_exceeded``), refunded."""
    queue_key: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    """Its turn in the queue (start-time fair queueing by account, ``tasks/queue.py``): claims
    take the lowest first."""
    budget_key_id: Mapped[str | None] = mapped_column(String(64))
    """The API key whose ``credit_limit`` this task counts against; only set for such keys, so
    a create with an unlimited key writes and indexes nothing more (``billing/budget.py``)."""


class QueueClock(Base):
    """One row: the queue's virtual time, the highest turn a claim has started. A new task's
    turn is at least this, so an account that was idle gets no backlog of turns to spend."""

    __tablename__ = "queue_clock"
    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    virtual_time: Mapped[int] = mapped_column(BigInteger, default=0)


class IdempotencyKey(Base):
    """One per (account, client_request_id) inside the retention window."""

    __tablename__ = "idempotency_keys"

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class StoredFile(Base):
    """Bytes this server issued: task outputs (and, with the Files API, uploads)."""

    __tablename__ = "files"
    __table_args__ = (Index(None, "account_id", "created_at", "id"), Index(None, "expires_at"))

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    task_id: Mapped[str | None] = mapped_column(ForeignKey("tasks.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(255))
    mime_type: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    storage_key: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    """Hidden from the account (deleted or expired); the bytes may still serve a running task."""
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    """Probed length of a video or audio file."""
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    """When the bytes were removed from storage."""


class WebhookDelivery(Base):
    """One webhook message (a task's end) and its delivery attempts: written in the transaction
    that ends the task (an outbox), sent and retried by the workers' dispatcher."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="status"),
        Index(None, "status", "next_attempt_at"),
        Index(None, "task_id"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    """Also the ``webhook-id`` header: the same across retries, so receivers can deduplicate."""
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id"))
    event_type: Mapped[str] = mapped_column(String(40))
    url: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    log: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    """One entry per attempt: ``at``, ``status_code`` or ``error``, ``duration_ms``."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AuditEntry(Base):
    """Append-only: one row per operator write (over ``/admin/v1`` or the CLI)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(40))
    """``admin-key`` (HTTP) or ``cli``."""
    action: Mapped[str] = mapped_column(String(40))
    """``account.create``, ``key.revoke``, ``grant``, ``task.refund``…"""
    target: Mapped[str | None] = mapped_column(String(100))
    request_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
