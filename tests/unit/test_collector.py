"""The collector keeps the long-lived mirror out of full collections (frozen) and still frees
every cycle's garbage, however many sources end cycles however often."""

import gc
import weakref
from collections.abc import Iterator

import pytest

from egp_operator.collector import FrozenAfterCycles


class Node:
    """An object that can sit in a reference cycle, which only the cyclic collector frees."""

    def __init__(self) -> None:
        self.other: Node | None = None


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def _garbage_cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_a_cycle_leaves_what_is_alive_out_of_full_collections() -> None:
    collector = FrozenAfterCycles(clock=Clock())
    kept = Node()

    collector.after_cycle()

    assert gc.get_freeze_count() > 0
    assert not any(obj is kept for obj in gc.get_objects())  # frozen: out of every scan


def test_the_garbage_of_cycles_ending_many_times_a_second_is_freed() -> None:
    """The leak of 1,000 sources: cycles end faster than any full collection comes, and
    nothing between them may freeze garbage for good. No full collection here: a young one
    frees what is not frozen, and nothing frozen is garbage."""
    clock = Clock()
    collector = FrozenAfterCycles(clock=clock)
    made = []
    for _ in range(600):
        made.append(_garbage_cycle())
        collector.after_cycle()
        clock.now += 0.05  # 20 cycles a second, far within the full collections' period

    gc.collect(1)
    assert sum(ref() is not None for ref in made) == 0


def test_cycles_ending_soon_after_a_freeze_leave_it_to_the_next() -> None:
    clock = Clock()
    collector = FrozenAfterCycles(freeze_every=1.0, clock=clock)
    collector.after_cycle()
    kept = Node()

    clock.now = 0.5
    collector.after_cycle()
    assert any(obj is kept for obj in gc.get_objects())  # not frozen yet

    clock.now = 1.0
    collector.after_cycle()
    assert not any(obj is kept for obj in gc.get_objects())


def test_garbage_that_was_alive_when_frozen_is_freed_within_the_period() -> None:
    clock = Clock()
    collector = FrozenAfterCycles(full_collection_every=60.0, clock=clock)
    a, b = Node(), Node()
    a.other, b.other = b, a
    collector.after_cycle()  # frozen while alive (a source's objects)
    ref = weakref.ref(a)
    del a, b  # the source is deleted: its objects are frozen garbage now

    clock.now = 30.0
    collector.after_cycle()
    assert ref() is not None  # within the period: still frozen, not scanned

    clock.now = 61.0
    collector.after_cycle()
    assert ref() is None


def test_a_slow_full_collection_comes_less_often() -> None:
    """At 1,000 sources a full collection stops the event loop for half a second: it may
    take at most its share of the time, so the next one waits longer."""
    clock = Clock()
    collector = FrozenAfterCycles(
        full_collection_every=60.0, full_collection_share=0.01, clock=clock
    )

    def takes_two_seconds(phase: str, info: dict[str, int]) -> None:
        if phase == "stop" and info["generation"] == 2:
            clock.now += 2.0

    gc.callbacks.append(takes_two_seconds)
    try:
        clock.now = 60.0
        collector.after_cycle()
    finally:
        gc.callbacks.remove(takes_two_seconds)
    a, b = Node(), Node()
    a.other, b.other = b, a
    collector.after_cycle()  # frozen while alive
    ref = weakref.ref(a)
    del a, b

    clock.now = 60.0 + 150.0  # past the 60 s floor, within 2 s / 1%
    collector.after_cycle()
    assert ref() is not None

    clock.now = 60.0 + 200.0
    collector.after_cycle()
    assert ref() is None


def test_the_period_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        FrozenAfterCycles(full_collection_every=0)
    with pytest.raises(ValueError, match="negative"):
        FrozenAfterCycles(freeze_every=-1)
    with pytest.raises(ValueError, match="share"):
        FrozenAfterCycles(full_collection_share=0)
