"""A route's health as a running process sees it, read back from its ``/metrics``.

Circuit breakers live in each worker process (an embedded server's worker included), so the
CLI cannot know them from the configuration alone; it asks a running process instead, through
the same Prometheus text an operator's dashboards read.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

CIRCUIT = {0: "closed", 1: "half_open", 2: "open"}


@dataclass
class RouteHealth:
    circuit: str | None = None
    attempts: dict[str, int] = field(default_factory=dict)
    """Attempts since the process started, by outcome (``ok`` or an error code)."""

    @property
    def summary(self) -> str:
        ok = self.attempts.get("ok", 0)
        failed = sum(n for outcome, n in self.attempts.items() if outcome != "ok")
        return f"{self.circuit or 'unused'}, {ok} ok / {failed} failed"


def parse(metrics_text: str) -> dict[tuple[str, str], RouteHealth]:
    """``(model, route)`` → health, from a ``/metrics`` page."""
    health: dict[tuple[str, str], RouteHealth] = defaultdict(RouteHealth)
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            key = (sample.labels.get("model", ""), sample.labels.get("route", ""))
            if sample.name == "sfumato_upstream_circuit_state":
                health[key].circuit = CIRCUIT.get(int(sample.value), "unknown")
            elif sample.name == "sfumato_upstream_attempts_total":
                outcome = sample.labels.get("outcome", "")
                health[key].attempts[outcome] = health[key].attempts.get(outcome, 0) + int(sample.value)
    return dict(health)
