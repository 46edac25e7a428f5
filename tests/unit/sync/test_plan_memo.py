"""A plan with the source's memo skips the models its last plan found settled, and decides
exactly what a plan without it decides: an upstream change, an EGPModel changed by someone
else, a write that did not happen and a vanished model are all still seen."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from egp_operator.sync import planner
from egp_operator.sync.mirrored import MirroredModel, StoredStatus
from egp_operator.sync.planner import Plan, PlanMemo, make_plan
from egp_operator.sync.upstream import UpstreamModel
from egp_testbench.fake_egp import generate_models
from tests.unit.sync.test_planner import POLICY, T0, Stored, apply, listed, mirror, upstream

LATER = T0 + timedelta(minutes=5)


def listing(count: int = 50, seed: int = 3) -> list[UpstreamModel]:
    return listed(generate_models(count, seed=seed))


def checked(models: list[UpstreamModel], mirrored: Stored, memo: PlanMemo) -> int:
    """How many listed models a plan with `memo` checked again, rather than skipped as
    settled: each one checked has its phase read first."""
    with mock.patch.object(planner, "phase_of", wraps=planner.phase_of) as phase_of:
        make_plan(models, mirrored, POLICY, LATER, memo=memo)
    return phase_of.call_count


def settled(models: list[UpstreamModel]) -> tuple[Stored, PlanMemo]:
    """Mirrored as the first plan said, and a memo that has seen one steady plan."""
    mirrored = mirror(make_plan(models, [], POLICY, T0))
    memo = PlanMemo()
    assert make_plan(models, mirrored, POLICY, T0, memo=memo).is_empty
    assert checked(models, mirrored, memo) == 0  # every model is skipped from now on
    return mirrored, memo


def decisions(plan: Plan) -> tuple[Any, ...]:
    return (plan.creates, plan.updates, plan.deletes, plan.events, dict(plan.model_counts))


def test_a_settled_steady_state_plans_nothing_and_counts_every_model() -> None:
    models = listing()
    mirrored, memo = settled(models)

    again = make_plan(models, mirrored, POLICY, LATER, memo=memo)

    assert decisions(again) == decisions(make_plan(models, mirrored, POLICY, LATER))
    assert sum(again.phase_counts.values()) == len(models)


def test_an_upstream_change_of_a_settled_model_is_planned() -> None:
    models = listing()
    mirrored, memo = settled(models)
    changed = [*models[:-1], dataclasses.replace(models[-1], status="failed")]

    plan = make_plan(changed, mirrored, POLICY, LATER, memo=memo)

    [update] = plan.updates
    assert update.model_id == models[-1].id
    assert update.status is not None
    assert update.status["phase"] == "Failed"


def test_an_egpmodel_someone_else_changed_is_put_back() -> None:
    models = listing()
    mirrored, memo = settled(models)
    edited = mirrored[0]
    mirrored[0] = MirroredModel(
        edited.name,
        edited.model_id,
        edited.labels,
        StoredStatus.of({**mirrored.statuses[edited.name], "phase": "Failed"}),
    )

    plan = make_plan(models, mirrored, POLICY, LATER, memo=memo)

    [update] = plan.updates
    assert update.name == edited.name
    assert update.status is not None
    assert update.status["phase"] == edited.status.phase


def test_a_write_that_did_not_happen_is_planned_again() -> None:
    models = [upstream(status="deploying")]
    mirrored, memo = settled(models)
    ready = [upstream(status="ready")]

    first = make_plan(ready, mirrored, POLICY, LATER, memo=memo)
    second = make_plan(ready, mirrored, POLICY, LATER, memo=memo)  # the write failed

    assert len(first.updates) == len(second.updates) == 1
    assert apply(mirrored, second) != mirrored


def test_a_settled_model_that_vanished_is_marked_missing() -> None:
    models = listing()
    mirrored, memo = settled(models)

    plan = make_plan(models[1:], mirrored, POLICY, LATER, memo=memo)

    [update] = plan.updates
    assert update.model_id == models[0].id
    assert update.status is not None
    assert update.status["phase"] == "Missing"


def test_a_record_with_a_field_too_deep_to_mirror_settles_like_any_other() -> None:
    deep: Any = "leaf"
    for _ in range(5000):
        deep = [deep]
    models = [upstream(model_metadata=deep)]
    mirrored = mirror(make_plan(models, [], POLICY, T0))
    memo = PlanMemo()

    plan = make_plan(models, mirrored, POLICY, LATER, memo=memo)

    assert plan.is_empty
    assert checked(models, mirrored, memo) == 0


@settings(max_examples=60, deadline=None)
@given(
    flips=st.lists(st.integers(min_value=0, max_value=29), max_size=10),
    vanished=st.sets(st.integers(min_value=0, max_value=29), max_size=5),
    statuses=st.lists(st.sampled_from(["ready", "failed", "deploying", "paused"]), max_size=10),
)
def test_with_or_without_the_memo_the_decisions_are_the_same(
    flips: list[int], vanished: set[int], statuses: list[str]
) -> None:
    models = listing(30, seed=9)
    mirrored, memo = settled(models)
    changed = list(models)
    for index, status in zip(flips, statuses, strict=False):
        changed[index] = dataclasses.replace(changed[index], status=status)
    changed = [m for i, m in enumerate(changed) if i not in vanished]

    with_memo = make_plan(changed, mirrored, POLICY, LATER, memo=memo)
    without = make_plan(changed, mirrored, POLICY, LATER)
    assert decisions(with_memo) == decisions(without)

    # And the cycle after those writes, against the mirror they made.
    after = apply(mirrored, without)
    assert decisions(make_plan(changed, after, POLICY, LATER, memo=memo)) == decisions(
        make_plan(changed, after, POLICY, LATER)
    )
