"""When a source's loop runs its first cycle: at once for what a user waits on, spread out for
sources that were synced before (an operator restart or a takeover: no thundering herd)."""

from __future__ import annotations

from typing import Any

import pytest

from egp_operator.scheduling import START_SPREAD_SECONDS
from egp_operator.scheduling import first_cycle_delay as delay_with_spec
from egp_operator.sync.spec import read_spec


def first_cycle_delay(source: dict[str, Any], draw: float) -> float:
    """The delay, with the spec read as the loop reads it."""
    return delay_with_spec(source, read_spec(source), draw)


def source(
    *, generation: int = 2, observed: int | None = 2, synced: str = "True", **spec: Any
) -> dict[str, Any]:
    status: dict[str, Any] = {"conditions": [{"type": "Synced", "status": synced}]}
    if observed is not None:
        status["observedGeneration"] = observed
    return {
        "metadata": {"name": "src", "namespace": "team-a", "generation": generation},
        "spec": {"credentialsSecretRef": {"name": "egp"}, "refreshInterval": "5m", **spec},
        "status": status,
    }


def test_a_source_synced_before_waits_a_random_part_of_at_most_a_minute() -> None:
    delays = [first_cycle_delay(source(), draw) for draw in (0.0, 0.5, 0.999)]

    assert delays == [0.0, START_SPREAD_SECONDS * 0.5, START_SPREAD_SECONDS * 0.999]


def test_a_short_interval_bounds_the_spread() -> None:
    assert first_cycle_delay(source(refreshInterval="10s"), 0.5) == 5.0


@pytest.mark.parametrize(
    "new",
    [
        {"observed": None},  # never synced
        {"observed": 0},  # the CRD's default status: the operator has not looked yet
        {"generation": 3},  # a spec not yet synced
        {"synced": "False"},  # the last cycle failed: retry at once
    ],
    ids=["no-status", "default-status", "new-spec", "failing"],
)
def test_what_a_user_waits_on_is_synced_at_once(new: dict[str, Any]) -> None:
    assert first_cycle_delay(source(**new), 0.9) == 0.0


def test_a_suspended_or_invalid_source_does_not_wait() -> None:
    assert first_cycle_delay(source(suspend=True), 0.9) == 0.0
    assert first_cycle_delay(source(pageSize=0), 0.9) == 0.0
