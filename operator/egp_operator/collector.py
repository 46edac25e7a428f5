"""Keep Python's cyclic garbage collector off the long-lived mirror.

At 10,000 models the EGPModel index and kopf's per-object state are about a million tracked
objects, and each cycle's listing promotes enough new ones to start a full collection that
scans them all: 0.2-0.3 s of CPU per cycle (bench/FINDINGS.md). Freezing what is alive after a
cycle leaves it out of those scans. Frozen objects are still freed by reference counting; only
reference cycles among them would wait, so every `unfreeze_every`-th cycle hands them back to
the collector, which then reclaims them in its next full collection.
"""

from __future__ import annotations

import gc


class FrozenAfterCycles:
    """Call `after_cycle()` when a sync cycle ends, from any source's loop."""

    def __init__(self, unfreeze_every: int = 30) -> None:
        if unfreeze_every < 1:
            raise ValueError("unfreeze_every must be at least 1")
        self.unfreeze_every = unfreeze_every
        self._cycles = 0

    def after_cycle(self) -> None:
        self._cycles += 1
        if self._cycles % self.unfreeze_every == 0:
            gc.unfreeze()
        else:
            gc.freeze()
