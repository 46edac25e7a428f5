import gc
import weakref
from collections.abc import Iterator

import pytest

from egp_operator.collector import FrozenAfterCycles


class Node:
    """An object that can sit in a reference cycle, which only the cyclic collector frees."""

    def __init__(self) -> None:
        self.other: Node | None = None


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
    collector = FrozenAfterCycles(unfreeze_every=3)
    collector.after_cycle()
    assert gc.get_freeze_count() > 0


def test_cyclic_garbage_frozen_by_a_cycle_is_reclaimed_once_unfrozen() -> None:
    collector = FrozenAfterCycles(unfreeze_every=3)
    cycle = _garbage_cycle()
    collector.after_cycle()
    gc.collect()
    assert cycle() is not None  # frozen: the collector does not see it yet
    collector.after_cycle()
    collector.after_cycle()
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert cycle() is None


def test_unfreeze_every_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        FrozenAfterCycles(unfreeze_every=0)
