"""The fault matrix every adapter is tested against, and what the router must make of each."""

from __future__ import annotations

from dataclasses import dataclass

from sfumato.providers.base import Job, Outputs, ProviderError
from sfumato.providers.router import RoutedProvider
from tests.upstreams.harness import Sleeps


@dataclass(frozen=True)
class Expect:
    fault: str
    code: str | None
    """``None``: the job succeeds after a retry; else the error code the task ends with."""


FAULT_MATRIX = [
    Expect("500", None), Expect("503", None), Expect("429", None), Expect("timeout", None),
    Expect("truncated", None), Expect("trickle", None), Expect("malformed", "upstream_bad_response"),
]


async def outcome(provider: RoutedProvider, job: Job) -> Outputs | ProviderError:
    try:
        return await provider.run(job)
    except ProviderError as exc:
        return exc


def check(expect: Expect, result: Outputs | ProviderError, sleeps: Sleeps) -> None:
    """Retried faults succeed after exactly one backoff; 429's wait is at least its Retry-After."""
    if expect.code is None:
        assert isinstance(result, Outputs), result
        assert len(sleeps.delays) == 1, sleeps.delays
        if expect.fault == "429":
            assert sleeps.delays[0] >= 1.0
    else:
        assert isinstance(result, ProviderError), result
        assert result.code == expect.code, (result.code, result.message)
        assert sleeps.delays == []  # a route fault fails over at once, it is not retried
