"""How long, and how often: `phaseSince`, `history` and the Flapping condition, as a model's
phases change from cycle to cycle (the planner over a stored mirror, as the cluster holds it)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest

from egp_operator.bounds import MAX_HISTORY_MESSAGE_LENGTH, MAX_PHASE_HISTORY
from egp_operator.sync.mirrored import StoredStatus
from egp_operator.sync.model_status import missing_status
from egp_operator.sync.planner import PlanMemo, make_plan
from egp_operator.vocabulary import timestamp
from tests.unit.sync.test_planner import POLICY, T0, Stored, apply, mirror, upstream

CREATED = "2026-11-28T11:20:00Z"  # 40 minutes before T0


def status_of(stored: Stored) -> dict[str, Any]:
    [status] = stored.statuses.values()
    return status


def cycles(statuses: list[str], *, every: timedelta = timedelta(minutes=1)) -> list[Stored]:
    """The mirror after each cycle, the model listed with each upstream status in turn."""
    mirrored = mirror(make_plan([upstream(status=statuses[0], created_at=CREATED)], [], POLICY, T0))
    after = [mirrored]
    for step, status in enumerate(statuses[1:], start=1):
        model = upstream(status=status, status_reason=f"why {step}", created_at=CREATED)
        plan = make_plan([model], mirrored, POLICY, T0 + step * every)
        mirrored = apply(mirrored, plan)
        after.append(mirrored)
    return after


def test_a_model_first_seen_deploying_has_deployed_since_its_creation_upstream() -> None:
    [first] = cycles(["deploying"])

    assert status_of(first)["phaseSince"] == CREATED
    assert status_of(first)["history"] == []


def test_a_model_first_seen_in_another_phase_is_in_it_since_it_was_first_seen() -> None:
    [first] = cycles(["ready"])

    assert status_of(first)["phaseSince"] == timestamp(T0)


@pytest.mark.parametrize(
    "created_at", ["2099-01-01T00:00:00Z", "1970-01-01T00:00:00Z", "yesterday", "", None]
)
def test_a_creation_time_no_one_could_have_written_is_not_believed(created_at: str | None) -> None:
    plan = make_plan([upstream(status="deploying", created_at=created_at)], [], POLICY, T0)

    assert plan.creates[0].status["phaseSince"] == timestamp(T0)


def test_a_creation_time_in_another_zone_is_written_in_utc() -> None:
    plan = make_plan(
        [upstream(status="deploying", created_at="2026-11-28T12:50:00+01:00")], [], POLICY, T0
    )

    assert plan.creates[0].status["phaseSince"] == "2026-11-28T11:50:00Z"


def test_each_change_is_recorded_in_order_and_the_phase_since_is_the_last() -> None:
    *_, last = cycles(["deploying", "ready", "failed", "ready"])

    status = status_of(last)
    assert [(e["from"], e["to"], e["time"]) for e in status["history"]] == [
        ("Deploying", "Ready", timestamp(T0 + timedelta(minutes=1))),
        ("Ready", "Failed", timestamp(T0 + timedelta(minutes=2))),
        ("Failed", "Ready", timestamp(T0 + timedelta(minutes=3))),
    ]
    assert status["history"][1]["message"] == "why 2"
    assert status["phaseSince"] == timestamp(T0 + timedelta(minutes=3))


def test_a_settled_cycle_writes_nothing_and_keeps_the_history() -> None:
    *_, mirrored = cycles(["deploying", "ready"])

    again = make_plan(
        [upstream(status="ready", status_reason="why 1", created_at=CREATED)],
        mirrored,
        POLICY,
        T0 + timedelta(hours=2),
    )

    assert again.is_empty


def test_the_history_keeps_the_last_few_changes_each_on_one_bounded_line() -> None:
    mirrored = mirror(make_plan([upstream(status="ready")], [], POLICY, T0))
    for step in range(1, MAX_PHASE_HISTORY + 3):
        status = "failed" if step % 2 else "ready"
        reason = f"line one\nline two {step} " + "x" * 1000
        plan = make_plan(
            [upstream(status=status, status_reason=reason)],
            mirrored,
            POLICY,
            T0 + timedelta(hours=step),
        )
        mirrored = apply(mirrored, plan)

    history = status_of(mirrored)["history"]
    assert len(history) == MAX_PHASE_HISTORY
    assert history[-1]["time"] == timestamp(T0 + timedelta(hours=MAX_PHASE_HISTORY + 2))
    assert history[0]["time"] == timestamp(T0 + timedelta(hours=3))  # the oldest went first
    assert all(len(e["message"]) <= MAX_HISTORY_MESSAGE_LENGTH for e in history)
    assert all(
        "\n" not in e["message"] and e["message"].startswith("line one line two") for e in history
    )


def test_going_missing_is_a_change_and_returning_another() -> None:
    *_, mirrored = cycles(["ready"])
    gone = apply(mirrored, make_plan([], mirrored, POLICY, T0 + timedelta(minutes=5)))
    back = apply(
        gone, make_plan([upstream(status="ready")], gone, POLICY, T0 + timedelta(minutes=9))
    )

    assert status_of(gone)["phaseSince"] == status_of(gone)["missingSince"]
    assert [(e["from"], e["to"]) for e in status_of(back)["history"]] == [
        ("Ready", "Missing"),
        ("Missing", "Ready"),
    ]
    assert status_of(back)["phaseSince"] == timestamp(T0 + timedelta(minutes=9))


def test_a_status_from_before_these_fields_takes_its_conditions_time_once() -> None:
    *_, mirrored = cycles(["failed"])
    old = {k: v for k, v in status_of(mirrored).items() if k not in ("phaseSince", "history")}
    legacy = Stored([with_status(mirrored[0], old)], {mirrored[0].name: old})

    plan = make_plan([upstream(status="failed")], legacy, POLICY, T0 + timedelta(days=1))
    upgraded = apply(legacy, plan)

    [update] = plan.updates
    assert update.status is not None
    assert update.status["phaseSince"] == timestamp(T0)
    assert make_plan([upstream(status="failed")], upgraded, POLICY, T0 + timedelta(days=2)).is_empty


def test_a_missing_model_from_before_these_fields_is_missing_since_its_missing_since() -> None:
    stored = StoredStatus.of({"phase": "Missing", "missingSince": "2026-01-01T00:00:00Z"})

    changes = missing_status(stored, now=timestamp(T0))

    assert changes["phaseSince"] == "2026-01-01T00:00:00Z"
    assert changes["history"] == []


def test_a_deploy_is_timed_from_deploying_to_its_outcome() -> None:
    mirrored = mirror(make_plan([upstream(status="deploying", created_at=CREATED)], [], POLICY, T0))

    plan = make_plan(
        [upstream(status="ready", created_at=CREATED)], mirrored, POLICY, T0 + timedelta(minutes=5)
    )

    [transition] = plan.transitions
    assert (transition.phase, transition.deploy_seconds) == ("Ready", 45 * 60)


def test_a_change_that_ends_no_deploy_is_counted_but_not_timed() -> None:
    mirrored = mirror(make_plan([upstream(status="ready")], [], POLICY, T0))

    plan = make_plan([upstream(status="failed")], mirrored, POLICY, T0 + timedelta(minutes=5))

    [transition] = plan.transitions
    assert (transition.phase, transition.deploy_seconds) == ("Failed", None)
    assert (
        make_plan([upstream(status="ready")], [], POLICY, T0).transitions == []
    )  # a first sighting


def flapping(stored: Stored) -> dict[str, Any] | None:
    return next((c for c in status_of(stored)["conditions"] if c["type"] == "Flapping"), None)


def test_a_model_that_flaps_gets_a_condition_and_one_warning_event() -> None:
    statuses = ["ready", "failed", "ready", "failed", "ready", "failed"]
    mirrored = mirror(make_plan([upstream(status=statuses[0])], [], POLICY, T0))
    flapping_events = []
    for step, status in enumerate(statuses[1:], start=1):
        plan = make_plan([upstream(status=status)], mirrored, POLICY, T0 + timedelta(minutes=step))
        mirrored = apply(mirrored, plan)
        flapping_events += [e for e in plan.events if e.reason == "PhaseFlapping"]
        assert (flapping(mirrored) is not None) == (step >= 4), step
        assert plan.flapping == (step >= 4)

    [event] = flapping_events
    assert event.type == "Warning"
    assert (
        "4 times in the last 60 minutes: Ready -> Failed -> Ready -> Failed -> Ready"
        in event.message
    )
    condition = flapping(mirrored)
    assert condition is not None
    assert condition["reason"] == "PhaseFlapping"
    assert condition["lastTransitionTime"] == timestamp(T0 + timedelta(minutes=4))


def test_a_model_that_changes_at_a_normal_pace_never_flaps() -> None:
    mirrored = mirror(make_plan([upstream(status="ready")], [], POLICY, T0))
    for step, status in enumerate(["failed", "ready", "failed", "ready", "failed"], start=1):
        plan = make_plan(
            [upstream(status=status)], mirrored, POLICY, T0 + timedelta(minutes=20 * step)
        )
        mirrored = apply(mirrored, plan)

        assert flapping(mirrored) is None
        assert not any(e.reason == "PhaseFlapping" for e in plan.events)


def test_the_flapping_condition_goes_once_the_changes_age_out_even_for_a_settled_model() -> None:
    memo = PlanMemo()
    mirrored = mirror(make_plan([upstream(status="ready")], [], POLICY, T0, memo=memo))
    for step, status in enumerate(["failed", "ready", "failed", "ready"], start=1):
        plan = make_plan(
            [upstream(status=status)], mirrored, POLICY, T0 + timedelta(minutes=step), memo=memo
        )
        mirrored = apply(mirrored, plan)
    assert flapping(mirrored) is not None
    steady = make_plan(
        [upstream(status="ready")], mirrored, POLICY, T0 + timedelta(minutes=30), memo=memo
    )
    assert steady.is_empty
    assert steady.flapping == 1

    later = make_plan(
        [upstream(status="ready")], mirrored, POLICY, T0 + timedelta(minutes=70), memo=memo
    )
    mirrored = apply(mirrored, later)

    assert flapping(mirrored) is None
    assert later.flapping == 0
    assert [e.reason for e in later.events] == []  # no phase changed: no Event


def with_status(model: Any, status: dict[str, Any]) -> Any:
    return dataclasses.replace(model, status=StoredStatus.of(status))
