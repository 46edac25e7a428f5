"""One budget for what the cycles in flight hold: in all, and a share per namespace, so that
one tenant's sources cannot take what the others need; a cycle past it ends holding nothing."""

from __future__ import annotations

import pytest

from egp_operator.sync.memory import ListingMemory, MemoryBudgetExhaustedError

MIB = 1024 * 1024


def test_cycles_hold_bytes_up_to_the_budget_and_give_them_back() -> None:
    memory = ListingMemory(100 * MIB)
    first, second = memory.hold("team-a"), memory.hold("team-b")
    first.add(20 * MIB)
    second.add(20 * MIB)

    assert memory.held == 40 * MIB
    first.release()
    second.release()
    assert memory.held == 0


def test_a_namespace_holds_at_most_its_share_and_the_others_still_can() -> None:
    memory = ListingMemory(100 * MIB)
    greedy = [memory.hold("team-a") for _ in range(3)]
    greedy[0].add(20 * MIB)

    with pytest.raises(MemoryBudgetExhaustedError, match="namespace team-a"):
        greedy[1].add(10 * MIB)  # 30 MiB: past a quarter of the budget

    healthy = memory.hold("team-b")
    healthy.add(20 * MIB)
    assert memory.held == 40 * MIB


def test_past_the_whole_budget_a_cycle_is_refused_at_once() -> None:
    memory = ListingMemory(100 * MIB)
    holds = [memory.hold(f"team-{n}") for n in range(5)]
    for hold in holds[:4]:
        hold.add(25 * MIB)

    with pytest.raises(MemoryBudgetExhaustedError, match="EGP_OPERATOR_LISTINGS_MEMORY_BYTES"):
        holds[4].add(1)
    assert memory.held == 100 * MIB


def test_a_namespace_may_always_hold_one_largest_listing() -> None:
    memory = ListingMemory(100 * MIB, largest_listing=42 * MIB)

    memory.hold("team-a").add(42 * MIB)

    assert memory.namespace_bytes == 42 * MIB


def test_a_refused_add_holds_nothing_more() -> None:
    memory = ListingMemory(10 * MIB)
    hold = memory.hold("team-a")
    hold.add(1 * MIB)

    with pytest.raises(MemoryBudgetExhaustedError):
        hold.add(5 * MIB)
    hold.release()

    assert memory.held == 0
