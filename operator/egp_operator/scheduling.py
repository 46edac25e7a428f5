"""When a source's next cycle runs: its interval, a growing backoff after failures, and a
bound on how often anything can wake it.

Pure (the clock and the random draw are passed in), so the policy is unit-tested without a
loop. A source's loop asks it how long to sleep after a cycle, and, once the sleep ended (its
time, or a wake-up: a spec change, a sync request), how long it must still wait: wake-ups are
honoured at once, but no source cycles more often than every MIN_REFRESH_INTERVAL, whatever
wakes it, and a wake-up does not erase the error backoff, which only a cycle that succeeds
resets (as controller-runtime's rate limiter forgets an item only on success).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from egp_operator.resources.models import MIN_REFRESH_INTERVAL, EGPSourceSpec
from egp_operator.sync.spec import InvalidSpec
from egp_operator.vocabulary import SYNCED

#: The first delay after a failed cycle; it doubles with each failure that follows.
ERROR_BACKOFF_START: Final = 5.0
#: The least time between the starts of two cycles of one source.
MIN_CYCLE_SPACING: Final = MIN_REFRESH_INTERVAL.total_seconds()
#: The longest a loop that finds its source already synced waits before its first cycle.
START_SPREAD_SECONDS: Final = 60.0


def first_cycle_delay(
    source: Mapping[str, Any], spec: EGPSourceSpec | InvalidSpec, draw: float
) -> float:
    """How long a loop waits before its first cycle; `spec` is the source's as the loop read
    it, and `draw` is uniform in [0, 1).

    A new source, or a spec not yet synced, is synced at once: its user is waiting. A source
    whose current spec was synced already (the operator restarted, or took over from a peer)
    waits a random part of its interval, at most START_SPREAD_SECONDS, so that a thousand
    sources do not all call EGP and the API server in the same second. A sync request or a
    spec change ends the wait at once."""
    status = source.get("status") or {}
    synced = any(
        c.get("type") == SYNCED and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    current = status.get("observedGeneration") == (source.get("metadata") or {}).get("generation")
    if not isinstance(spec, EGPSourceSpec) or spec.suspend or not (synced and current):
        return 0.0
    return draw * min(spec.refresh.total_seconds(), START_SPREAD_SECONDS)


@dataclass
class SourceSchedule:
    """One source's timing. `backoff_max` and `jitter` are the operator's settings
    (EGP_OPERATOR_ERROR_BACKOFF_MAX_SECONDS, EGP_OPERATOR_INTERVAL_JITTER)."""

    backoff_max: float
    jitter: float
    #: Cycles failed in a row: what the backoff grows with.
    failures: int = 0
    #: When the last cycle started (a monotonic clock), None before the first.
    last_start: float | None = None

    def cycle_started(self, now: float) -> None:
        self.last_start = now

    def cycle_ended(self, *, ok: bool, interval: float | None, draw: float) -> float:
        """The sleep before the next cycle: the source's interval after a success, the
        backoff after a failure (or when no interval is known: a spec the operator refused),
        with a jitter of ±`jitter` drawn from `draw`, uniform in [0, 1)."""
        self.failures = 0 if ok else self.failures + 1
        if ok and interval is not None:
            delay = interval
        else:
            delay = min(ERROR_BACKOFF_START * 2.0 ** (max(self.failures, 1) - 1), self.backoff_max)
        return delay * (1 - self.jitter + 2 * self.jitter * draw)

    def suspended(self, interval: float) -> float:
        """The sleep of a suspended source: it looks again after its interval, or at once when
        its spec changes (a wake-up). No cycle ran, so the count of failures is kept."""
        return interval

    def spacing_left(self, now: float) -> float:
        """How long the loop must still wait before its next cycle may start: nothing when
        the last one started at least MIN_CYCLE_SPACING ago."""
        if self.last_start is None:
            return 0.0
        return max(self.last_start + MIN_CYCLE_SPACING - now, 0.0)
