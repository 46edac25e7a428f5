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

from dataclasses import dataclass
from typing import Final

from egp_operator.resources.models import MIN_REFRESH_INTERVAL

#: The first delay after a failed cycle; it doubles with each failure that follows.
ERROR_BACKOFF_START: Final = 5.0
#: The least time between the starts of two cycles of one source.
MIN_CYCLE_SPACING: Final = MIN_REFRESH_INTERVAL.total_seconds()


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

    def spacing_left(self, now: float) -> float:
        """How long the loop must still wait before its next cycle may start: nothing when
        the last one started at least MIN_CYCLE_SPACING ago."""
        if self.last_start is None:
            return 0.0
        return max(self.last_start + MIN_CYCLE_SPACING - now, 0.0)
