"""One budget for the memory that cycles in flight hold, shared by every source of the process.

A cycle holds the bodies it is reading and the records `upstream.py` keeps of its listing
until its writes are done (a plan holds references to those records, not statuses). One
source's listing is bounded by its own caps; this bounds them all together, so that sources
whose cycles overlap, however many, cannot take the operator past its memory limit. Each
namespace (each tenant) may hold at most a share of it (a quarter, or one largest listing if
that is more), so that one tenant's sources cannot take all of it from the others.

A cycle that would go past the budget or its namespace's share ends at once, holding nothing,
and is retried with the error backoff: it never waits for another cycle to let go (which a
slow, hostile endpoint could make it do for as long as its deadline).
"""

from __future__ import annotations

from collections import Counter
from typing import Final

#: The share of the whole budget one namespace's cycles may hold together, at least.
NAMESPACE_SHARE: Final = 0.25


class MemoryBudgetExhaustedError(Exception):
    """The cycle would hold more than the budget has left; nothing it held is kept."""


class ListingMemory:
    """Bytes held by the cycles in flight, in all and by namespace."""

    def __init__(self, total_bytes: int, *, largest_listing: int = 0) -> None:
        """`largest_listing`: what one cycle may hold at most; a namespace may always hold
        one such, else its largest account could never sync."""
        self.total_bytes = total_bytes
        self.namespace_bytes = max(int(total_bytes * NAMESPACE_SHARE), largest_listing, 1)
        self._held = 0
        self._by_namespace: Counter[str] = Counter()

    @property
    def held(self) -> int:
        return self._held

    def hold(self, namespace: str) -> CycleHold:
        """What one cycle of a source of `namespace` holds; release it when the cycle ends."""
        return CycleHold(self, namespace)

    def _take(self, namespace: str, size: int) -> None:
        if self._held + size > self.total_bytes:
            raise MemoryBudgetExhaustedError(
                f"the operator's cycles in flight hold {self._held} bytes of the"
                f" {self.total_bytes} they may (EGP_OPERATOR_LISTINGS_MEMORY_BYTES); retried"
            )
        if self._by_namespace[namespace] + size > self.namespace_bytes:
            raise MemoryBudgetExhaustedError(
                f"the cycles in flight of namespace {namespace} hold"
                f" {self._by_namespace[namespace]} bytes of the {self.namespace_bytes} a"
                " namespace may hold of EGP_OPERATOR_LISTINGS_MEMORY_BYTES; retried"
            )
        self._held += size
        self._by_namespace[namespace] += size

    def _give_back(self, namespace: str, size: int) -> None:
        self._held -= size
        self._by_namespace[namespace] -= size
        if self._by_namespace[namespace] <= 0:
            del self._by_namespace[namespace]


class CycleHold:
    """The bytes one cycle holds of the budget; `release` gives them all back."""

    def __init__(self, memory: ListingMemory, namespace: str) -> None:
        self._memory = memory
        self._namespace = namespace
        self.bytes = 0

    def add(self, size: int) -> None:
        """Hold `size` more bytes, or raise MemoryBudgetExhaustedError."""
        self._memory._take(self._namespace, size)
        self.bytes += size

    def give_back(self, size: int) -> None:
        """Give back `size` of the bytes held (a body, once parsed)."""
        size = min(size, self.bytes)
        self._memory._give_back(self._namespace, size)
        self.bytes -= size

    def release(self) -> None:
        self.give_back(self.bytes)
