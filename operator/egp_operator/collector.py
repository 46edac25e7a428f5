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
whatever the number of sources. Cycles that end within `freeze_every` of the last freeze leave
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
        freeze_every: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if full_collection_every <= 0 or freeze_every < 0:
            raise ValueError("full_collection_every must be positive, freeze_every not negative")
        self.full_collection_every = full_collection_every
        self.freeze_every = freeze_every
        self._clock = clock
        self._last_full = clock()
        self._last_freeze: float | None = None

    def after_cycle(self) -> None:
        now = self._clock()
        if now - self._last_full >= self.full_collection_every:
            gc.unfreeze()
            gc.collect()
            self._last_full = now
        elif self._last_freeze is None or now - self._last_freeze >= self.freeze_every:
            gc.collect(1)  # the young generations: the cycles' garbage, before it is frozen
        else:
            return
        gc.freeze()
        self._last_freeze = now
