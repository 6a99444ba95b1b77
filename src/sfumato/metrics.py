"""Prometheus metrics, served at ``/metrics`` by every API process.

Counters move only after the transaction that made the change committed. The queue depth
is read from the database when scraped, so every process reports the same truth.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HTTP_REQUESTS = Counter("sfumato_http_requests_total", "HTTP requests answered.", ["method", "route", "status"])
HTTP_LATENCY = Histogram("sfumato_http_request_duration_seconds", "HTTP request latency.", ["method", "route"])
TASKS_CREATED = Counter("sfumato_tasks_created_total", "Tasks created.", ["model"])
TASKS_ENDED = Counter("sfumato_tasks_ended_total", "Tasks that reached a terminal state.", ["model", "status"])
QUEUE_DEPTH = Gauge("sfumato_tasks_in_state", "Tasks not yet ended, by state (read at scrape time).", ["status"])
QUEUED = Gauge("sfumato_tasks_queued", "Tasks waiting in the queue, by model and priority (read at scrape time).",
               ["model", "priority"])
_WAIT_BUCKETS = (0.005, 0.025, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600)
QUEUE_WAIT = Histogram("sfumato_task_queue_wait_seconds", "From create to a worker's claim (queued tasks; a "
                       "task run at once by the synchronous door is not counted).", ["model"], buckets=_WAIT_BUCKETS)
RUN_TIME = Histogram("sfumato_task_run_seconds", "From a worker's claim to the task's end, as that worker saw it.",
                     ["model", "status"], buckets=(0.1, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 900))
DEADLINES = Counter("sfumato_tasks_deadline_exceeded_total", "Tasks ended by their Cancel-After deadline, by "
                    "where they were (queued or running).", ["model", "state"])
CREDITS = Counter("sfumato_credits_total", "Credits moved by the ledger.", ["movement"])
PROVIDER_LATENCY = Histogram("sfumato_provider_seconds", "Provider call duration.", ["provider", "model"],
                             buckets=(0.1, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300))
PROVIDER_ERRORS = Counter("sfumato_provider_errors_total", "Provider calls that failed.", ["provider", "model", "code"])
UPSTREAM_ATTEMPTS = Counter("sfumato_upstream_attempts_total", "Attempts on an upstream route, by outcome "
                            "(ok, or the error code).", ["model", "route", "outcome"])
UPSTREAM_LATENCY = Histogram("sfumato_upstream_attempt_seconds", "Duration of one attempt on an upstream route.",
                             ["model", "route"], buckets=(0.1, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300))
UPSTREAM_CIRCUIT = Gauge("sfumato_upstream_circuit_state", "A route's circuit breaker in this process: 0 closed, "
                         "1 half-open, 2 open (updated as jobs use the route).", ["model", "route"])
UPSTREAM_SKIPPED = Counter("sfumato_upstream_skipped_total", "Jobs that skipped a route because its circuit "
                           "was open.", ["model", "route"])


def task_ended(model: str, status: str, reserved: int, charged: int) -> None:
    TASKS_ENDED.labels(model, status).inc()
    if charged:
        CREDITS.labels("settled").inc(charged)
    if reserved > charged:
        CREDITS.labels("released").inc(reserved - charged)


class HttpMetricsMiddleware:
    """Counts and times requests by route template (``/api/v1/tasks/{task_id}``), not raw path."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            HTTP_REQUESTS.labels(scope["method"], route, str(status)).inc()
            HTTP_LATENCY.labels(scope["method"], route).observe(time.perf_counter() - started)
