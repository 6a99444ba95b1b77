"""The one error hierarchy. Services raise these; ``api/errors.py`` maps them to HTTP once."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class SfumatoError(Exception):
    code: str = "internal_error"
    status: int = 500
    default_message: str = "Internal error."
    headers: dict[str, str] = {}
    """Extra response headers (an instance may set its own, e.g. ``Connection: close``)."""

    def __init__(self, message: str | None = None, details: list[FieldError] | None = None):
        self.message = message or self.default_message
        self.details = details or []
        super().__init__(self.message)


class ValidationFailed(SfumatoError):
    code = "validation_failed"
    status = 422
    default_message = "The request is not valid."


class InsufficientCredits(SfumatoError):
    code = "insufficient_credits"
    status = 402
    default_message = "The account's balance cannot cover this task."


class KeyBudgetExceeded(SfumatoError):
    """The API key's own ``credit_limit`` for the day or month would be passed (the account may
    still have credits)."""

    code = "key_budget_exceeded"
    status = 402
    default_message = "This API key's credit limit for the period cannot cover this task."


class IdempotencyConflict(SfumatoError):
    code = "idempotency_conflict"
    status = 409
    default_message = "This client_request_id was already used with a different request."


class RateLimited(SfumatoError):
    code = "rate_limited"
    status = 429
    default_message = "Too many requests."

    def __init__(self, retry_after: int, message: str | None = None):
        self.retry_after = max(1, retry_after)
        super().__init__(message or f"Too many requests; retry after {self.retry_after} s.")


class NotFound(SfumatoError):
    code = "not_found"
    status = 404
    default_message = "Not found."


class Unauthorized(SfumatoError):
    code = "unauthorized"
    status = 401
    default_message = "Missing or invalid API key."
    headers = {"WWW-Authenticate": 'Bearer realm="sfumato"'}
    """RFC 6750 §3: a 401 names the scheme the client should use."""

    def __init__(self, message: str | None = None, *, invalid_token: bool = False):
        super().__init__(message)
        if invalid_token:  # a key was sent and is not good (RFC 6750 §3.1's error code)
            self.headers = {"WWW-Authenticate": 'Bearer realm="sfumato", error="invalid_token"'}


class Forbidden(SfumatoError):
    """A good key asking for what it may not do (a model outside the key's ``models``)."""

    code = "forbidden"
    status = 403
    default_message = "This API key may not do that."


class Conflict(SfumatoError):
    """The request clashes with what exists (a duplicate account name, a second refund)."""

    code = "conflict"
    status = 409
    default_message = "The request conflicts with the current state."


class TaskNotCancelable(SfumatoError):
    code = "task_not_cancelable"
    status = 409
    default_message = "The task cannot be canceled in its current state."


class PayloadTooLarge(SfumatoError):
    code = "payload_too_large"
    status = 413
    default_message = "The request body is over the size limit."


class FileTooLarge(SfumatoError):
    code = "file_too_large"
    status = 413
    default_message = "The file is larger than the limit."


class LinkExpired(SfumatoError):
    code = "link_expired"
    status = 403
    default_message = "The link is invalid or has expired."


class ServerBusy(SfumatoError):
    """Backpressure, not an outage: every database connection is in use; retry shortly."""

    code = "server_busy"
    status = 503
    default_message = "The server is at capacity; retry after the time in Retry-After."


class ServiceUnavailable(SfumatoError):
    code = "service_unavailable"
    status = 503
    default_message = "The service is temporarily unavailable; retry shortly."
