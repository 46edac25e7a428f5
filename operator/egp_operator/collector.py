"""Keep Python's cyclic garbage collector off the long-lived mirror, without keeping garbage.

At 10,000 models the EGPModel index and kopf's per-object state are about a million tracked
objects, and each cycle's listing promotes enough new ones to start a full collection that
scans them all: 0.2-0.3 s of CPU per cycle (bench/FINDINGS.md). Freezing what is alive after a
cycle leaves it out of those scans.

What is frozen is never examined by the collector, so a reference cycle frozen as garbage stays
until it is unfrozen and a full collection runs. An earlier version froze after every cycle and
unfroze every 30th: with many sources, cycles end many times a second, the next freeze came
long before any full collection, and every cycle's cyclic garbage stayed for good (RSS rose by
tens of MB a minute at 1,000 sources; bench/FINDINGS.md). Now each cycle's own garbage, still in
the young generations, is collected before the freeze, and at most every
`full_collection_every` seconds everything is unfrozen and fully collected, so garbage that
was alive when frozen (a deleted source's objects) is reclaimed too: a bounded cost in time,
whatever the number of sources. That full collection scans everything the process holds (0.5 s
of CPU at 1,000 sources, with the event loop stopped), so it comes less often than every
`full_collection_every` seconds when it is slow: at most `full_collection_share` of the time
goes to it. Cycles that end within `freeze_every` of the last freeze leave
it at that (with 1,000 sources, cycles end 17 times a second, and a young collection after each
was 5% of a source's cycle): what they leave is frozen by the next one.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable


class FrozenAfterCycles:
    """Call `after_cycle()` when a sync cycle ends, from any source's loop."""

    def __init__(
        self,
        *,
        full_collection_every: float = 60.0,
        full_collection_share: float = 0.002,
        freeze_every: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if full_collection_every <= 0 or not 0 < full_collection_share <= 1 or freeze_every < 0:
            raise ValueError(
                "full_collection_every must be positive, full_collection_share in (0, 1],"
                " freeze_every not negative"
            )
        self.full_collection_every = full_collection_every
        self.full_collection_share = full_collection_share
        #: Seconds from one full collection to the next: longer when the last one was slow.
        self.full_collection_period = full_collection_every
        self.freeze_every = freeze_every
        self._clock = clock
        self._last_full = clock()
        self._last_freeze: float | None = None

    def after_cycle(self) -> None:
        now = self._clock()
        if now - self._last_full >= self.full_collection_period:
            gc.unfreeze()
            gc.collect()
            spent = self._clock() - now
            self.full_collection_period = max(
                self.full_collection_every, spent / self.full_collection_share
            )
            self._last_full = now
        elif self._last_freeze is None or now - self._last_freeze >= self.freeze_every:
            gc.collect(1)  # the young generations: the cycles' garbage, before it is frozen
        else:
            return
        gc.freeze()
        self._last_freeze = now
