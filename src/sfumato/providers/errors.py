"""The upstream error classes adapters raise, one per way an upstream can fail.

Each fixes the ``error.code`` a client sees and whether the router may retry the same route,
fail over to the next, or must stop (the request itself was refused). Adapters decide which
class an upstream answer is; the router only reads ``retryable`` / ``route_fault``.
"""

from __future__ import annotations

from sfumato.providers.base import ProviderError


class UpstreamError(ProviderError):
    """5xx or a failed upstream task: transient as far as anyone can tell."""

    def __init__(self, message: str, *, retry_after: float | None = None, code: str = "upstream_error"):
        super().__init__(code, message, retryable=True, retry_after=retry_after)


class UpstreamUnavailable(UpstreamError):
    """The connection failed or broke (refused, reset, truncated body), or every circuit is open."""

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message, retry_after=retry_after, code="upstream_unavailable")


class UpstreamTimeout(UpstreamError):
    def __init__(self, message: str):
        super().__init__(message, code="upstream_timeout")


class UpstreamRateLimited(UpstreamError):
    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message, retry_after=retry_after, code="upstream_rate_limited")


class UpstreamBadResponse(ProviderError):
    """An answer sfumato cannot use (malformed JSON, missing fields, not an image, a redirect,
    a download from a host the route does not allow). Retrying the same route rarely helps."""

    route_fault = True

    def __init__(self, message: str):
        super().__init__("upstream_bad_response", message)


class UpstreamAuthFailed(ProviderError):
    """The route's credentials or model were refused (401/403/404): an operator's problem."""

    route_fault = True

    def __init__(self, message: str, *, code: str = "upstream_auth_failed"):
        super().__init__(code, message)


class UpstreamInvalidRequest(ProviderError):
    """The upstream rejected the request's content; another route would reject it too."""

    def __init__(self, message: str):
        super().__init__("upstream_invalid_request", message)


class ContentPolicyViolation(ProviderError):
    def __init__(self, message: str):
        super().__init__("content_policy_violation", message)


class NoRoute(ProviderError):
    """No configured route can serve this kind of job (e.g. only an edit-only route is live)."""

    def __init__(self, message: str):
        super().__init__("no_route", message)


def for_status(status: int, message: str, retry_after: float | None = None) -> ProviderError:
    """The default class for an HTTP status; adapters first pick out what their upstream marks
    as a content-policy refusal, then fall back to this."""
    if status == 429:
        return UpstreamRateLimited(message, retry_after=retry_after)
    if status in (408, 409) or status >= 500:
        return UpstreamError(message, retry_after=retry_after)
    if status in (401, 403, 404):
        return UpstreamAuthFailed(message)
    return UpstreamInvalidRequest(message)
