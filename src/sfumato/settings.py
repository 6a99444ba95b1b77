"""Every knob in one typed place. Each has an offline default and an ``SFUMATO_`` env var."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from platformdirs import user_data_dir
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path(user_data_dir("sfumato", appauthor=False))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SFUMATO_", env_file=None, extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir)
    database_url: str | None = None
    """SQLAlchemy URL. Unset: SQLite in WAL mode at ``{data_dir}/sfumato.db``."""

    database_pool_size: int = Field(default=10, ge=1)
    """PostgreSQL connections each process keeps open for the ORM's paths; the hot paths' driver
    pool (task create and poll, key checks) opens up to ``size + overflow`` more. A process can
    so hold ``2 * (size + overflow)``: keep that times the number of processes under the server's
    ``max_connections`` (100 by default). SQLite: 8 readers; its writes queue in process."""
    database_pool_overflow: int = Field(default=10, ge=0)
    """Extra connections opened under a burst and closed after it."""
    database_pool_timeout_seconds: float = Field(default=10.0, gt=0)
    """How long a request waits for a free connection before it is answered 503 ``server_busy``
    with ``Retry-After`` (saturation, told apart from ``service_unavailable``, an outage)."""

    public_url: str | None = None
    """Base URL put in signed media links. Unset: taken from each API request."""
    secret_key: str | None = None
    """Signs media URLs. Unset: generated once and kept in ``{data_dir}/secret.key``."""
    admin_key: str | None = None
    """The operator's key for ``/admin/v1`` (and the console). Unset: generated once and kept in
    ``{data_dir}/admin_key``; ``sfumato admin-key`` prints it."""

    # Worker
    run_worker: bool = True
    """Run the worker inside the API process (the embedded default)."""
    worker_concurrency: int = Field(default=64, ge=1)
    worker_poll_seconds: float = Field(default=1.0, gt=0)
    lease_seconds: float = Field(default=30.0, gt=0)
    task_timeout_seconds: float = Field(default=300.0, gt=0)
    max_attempts: int = Field(default=3, ge=1)
    """How many times a task may be claimed (crash recoveries included) before it fails."""
    maintenance_interval_seconds: float = Field(default=5.0, gt=0)
    """How often each worker recovers expired leases and ends queued tasks past their deadline."""

    # Queue: fairness, priority, deadlines
    account_concurrency: int | None = Field(default=None, ge=1)
    """Most tasks of one account running at once across all workers; the rest wait queued (never
    refused). Unset: no cap. Accounts with queued work take turns either way."""
    low_priority_ageing: int = Field(default=100, ge=0)
    """How many turns of the queue (tasks started, across accounts) a ``priority: "low"`` task is
    placed behind the normal ones: it waits while its account's normal tasks are ahead, and
    reaches the front once that many turns have passed, so low tasks never starve."""
    cancel_after_min_seconds: float = Field(default=5.0, gt=0)
    """Shortest deadline ``Cancel-After`` may set on create."""
    cancel_after_max_seconds: float = Field(default=86400.0, gt=0)
    """Longest deadline ``Cancel-After`` may set on create."""
    orphan_grace_seconds: float = Field(default=3600.0, ge=60)
    """Stored bytes no file row names are removed once this old; also how often they are looked for."""

    redis_url: str | None = None
    """``redis://host:6379/0``: share rate limits between API processes. Unset: per process."""
    auth_cache_seconds: float = Field(default=5.0, ge=0)
    """How long an API process trusts a key it has checked; a revocation takes effect within it."""

    # Credits, limits, retention
    rate_limit_create: str = "120/minute"
    """Per-key limit on task creation, in the ``limits`` notation (``N/second|minute|hour``)."""
    max_prompt_chars: int = Field(default=32000, ge=1)
    """Cap for models whose page documents no prompt limit (the upstream OpenAI limit)."""
    idempotency_window_hours: float = Field(default=72.0, gt=0)
    media_url_ttl_seconds: int = Field(default=3600, ge=60, le=604800)
    output_retention_hours: float = Field(default=168.0, gt=0)

    # Files
    upload_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    """Largest accepted upload (the model pages allow 10 MB per reference image)."""
    max_image_pixels: int = Field(default=50_000_000, ge=1)
    """Largest accepted image in pixels, checked from the header before any decode."""
    upload_retention_hours: float = Field(default=24.0, gt=0)
    upload_max_bytes_video: int = Field(default=100 * 1024 * 1024, ge=1)
    upload_max_bytes_audio: int = Field(default=25 * 1024 * 1024, ge=1)
    max_media_seconds: float = Field(default=600.0, gt=0)
    """Longest accepted video or audio upload."""
    duration_token_ttl_hours: float = Field(default=24.0, gt=0)

    # Catalog and sandbox
    catalog_dir: Path | None = None
    """Extra directory of model files (``*.yaml``) loaded after the built-in ones."""
    sandbox_latency_ms: str = "300-900"
    """Simulated sandbox latency: ``N`` or ``MIN-MAX`` milliseconds."""
    sandbox_failure_rate: float = Field(default=0.0, ge=0.0, le=1.0)

    # Providers
    routes_file: Path | None = None
    """YAML routing file (models → ordered upstream routes). Unset: the built-in routing, where
    each model goes upstream once its provider's key variable is set (docs/providers.md)."""
    sandbox_only: bool = False
    """Run every model on the sandbox whatever provider keys the environment holds."""
    dashscope_region: Literal["singapore", "beijing"] = "singapore"
    """Where DashScope routes without a ``base_url`` go: ``singapore`` (dashscope-intl.aliyuncs.com)
    or ``beijing`` (dashscope.aliyuncs.com, the dashscope SDK's default). A key works only in the
    region that issued it."""

    max_prefer_wait_seconds: int = Field(default=60, ge=0, le=600)
    """Longest wait ``Prefer: wait=N`` (on POST /api/v1/tasks) or a synchronous door may hold a
    request open for a task to end."""

    # HTTP server (sfumato serve)
    http_parser: Literal["httptools", "h11"] = "httptools"
    """The HTTP/1.1 parser: httptools (llhttp, in C) or h11 (pure Python)."""
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    """Longest time to receive a request head, from connecting (or from the next request's first byte)."""
    body_timeout_seconds: float = Field(default=30.0, gt=0)
    """Longest pause while receiving a request body; also the grace before the minimum rate counts."""
    body_min_bytes_per_second: int = Field(default=1024, ge=0)
    """Slowest average rate a request body may arrive at once the grace is spent; ``0``: no minimum."""
    access_log: bool = False
    """One log line per request (uvicorn's access log). Off by default: at a thousand requests a
    second it costs more CPU than a poll itself; request ids are in every error and worker line."""

    # Storage
    storage_backend: Literal["local", "s3"] = "local"
    """``local``: files under ``{data_dir}/storage``; ``s3``: an S3-compatible bucket."""
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    """Unset: AWS itself. Set for MinIO, R2, Ceph… (``http://127.0.0.1:9000``)."""
    s3_region: str | None = None
    s3_prefix: str = ""
    """Key prefix inside the bucket (one bucket shared by several deployments)."""
    s3_presigned_downloads: bool = False
    """Send file downloads to a short-lived presigned URL of the bucket instead of streaming them
    through sfumato (the client must be able to reach the bucket)."""

    # Webhooks
    webhook_allow_private: bool = False
    """Let webhooks reach loopback, private and link-local addresses (a private network; tests)."""
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    """Time limit of one webhook POST; a slower receiver counts as a failed attempt."""
    webhook_poll_seconds: float = Field(default=1.0, gt=0)
    """How often each worker looks for webhooks due to be sent."""

    log_format: Literal["text", "json"] = "text"
    """``json``: one JSON object per line, with request_id and task_id on every record."""
    worker_metrics_port: int | None = None
    """Serve a standalone worker's Prometheus metrics on this port (``sfumato worker``)."""

    demo_credits: int = Field(default=1000, ge=0)

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, url: str | None) -> str | None:
        """Accept plain ``postgresql://`` and ``sqlite://`` URLs and pick the async driver."""
        if url is None or url == "":
            return None
        for plain, driver in (
            ("postgresql://", "postgresql+asyncpg://"),
            ("postgres://", "postgresql+asyncpg://"),
            ("sqlite://", "sqlite+aiosqlite://"),
        ):
            if url.startswith(plain):
                return driver + url[len(plain) :]
        return url

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'sfumato.db'}"

    @model_validator(mode="after")
    def _s3_needs_a_bucket(self) -> Settings:
        if self.storage_backend == "s3" and not self.s3_bucket:
            raise ValueError("SFUMATO_STORAGE_BACKEND=s3 needs SFUMATO_S3_BUCKET")
        return self

    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "storage"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")
