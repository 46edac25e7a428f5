"""The planner turns a complete listing and the mirrored objects into the writes needed."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from egp_operator.bounds import MAX_EVENTS_PER_CYCLE, MAX_MODEL_ID_LENGTH
from egp_operator.egp import InferenceModel
from egp_operator.sync.mirrored import MirroredModel, StoredStatus
from egp_operator.sync.naming import PHASE_LABEL
from egp_operator.sync.planner import Plan, PlanMemo, SourcePolicy, make_plan
from egp_operator.sync.upstream import UpstreamModel, keep_for_mirror
from egp_testbench.fake_egp import generate_models

T0 = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
POLICY = SourcePolicy(namespace="team-a", name="prod")


def parsed(**fields: Any) -> InferenceModel:
    base = {
        "id": "m-1",
        "name": "llama-3-8b-support",
        "model_vendor": "llmengine",
        "model_type": "chat_completion",
        "status": "ready",
        "created_at": "2025-03-14T18:02:11Z",
    }
    return InferenceModel.model_validate(base | fields)


def upstream(**fields: Any) -> UpstreamModel:
    """A listed model as a cycle keeps it."""
    return keep_for_mirror(parsed(**fields))


def listed(models: list[dict[str, Any]]) -> list[UpstreamModel]:
    return [keep_for_mirror(InferenceModel.model_validate(m)) for m in models]


class Stored(list[MirroredModel]):
    """The index of the source's EGPModels, and their whole statuses as the API server holds
    them (a merge patch keeps what it does not name), by object name."""

    def __init__(self, models: list[MirroredModel], statuses: dict[str, dict[str, Any]]) -> None:
        super().__init__(models)
        self.statuses = statuses


def indexed(
    name: str, model_id: str, labels: dict[str, str], status: dict[str, Any], created: str
) -> MirroredModel:
    return MirroredModel(
        name, model_id, labels, StoredStatus.of(status), creation_timestamp=created
    )


def mirror(result: Plan) -> Stored:
    """What the cluster holds after the plan's creates were applied."""
    statuses = {c.name: c.status for c in result.creates}
    return Stored(
        [indexed(c.name, c.model_id, c.labels, c.status, "t0") for c in result.creates], statuses
    )


def apply(mirrored: list[MirroredModel], result: Plan) -> Stored:
    statuses = dict(getattr(mirrored, "statuses", {}))
    by_name = {m.name: m for m in mirrored}
    for update in result.updates:
        current = by_name[update.name]
        status = statuses.get(update.name, {})
        if update.recipe is not None:
            status = update.recipe.build()
        elif update.status_changes is not None:
            status = {**status, **update.status_changes}
        statuses[update.name] = status
        by_name[update.name] = indexed(
            current.name,
            current.model_id,
            update.labels or dict(current.labels),
            status,
            current.creation_timestamp,
        )
    for delete in result.deletes:
        by_name.pop(delete.name)
        statuses.pop(delete.name, None)
    created = mirror(result)
    return Stored([*by_name.values(), *created], statuses | created.statuses)


def test_a_new_model_is_created_with_its_phase_labels_and_ready_condition() -> None:
    result = make_plan([upstream()], [], POLICY, T0)

    [create] = result.creates
    assert create.model_id == "m-1"
    assert create.name.startswith("llama-3-8b-support-")
    assert create.labels[PHASE_LABEL] == "Ready"
    assert create.status["phase"] == "Ready"
    ready = next(c for c in create.status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Ready")


@pytest.mark.parametrize(
    ("status", "phase", "ready"),
    [
        ("ready", "Ready", "True"),
        ("deploying", "Deploying", "False"),
        ("failed", "Failed", "False"),
        ("deployment_timeout", "DeploymentTimeout", "False"),
        ("paused", "Unknown", "False"),
        (None, "Unknown", "False"),
    ],
)
def test_upstream_status_maps_to_phase_and_ready(
    status: str | None, phase: str, ready: str
) -> None:
    [create] = make_plan([upstream(status=status)], [], POLICY, T0).creates

    condition = next(c for c in create.status["conditions"] if c["type"] == "Ready")
    assert create.status["phase"] == phase
    assert (condition["status"], condition["reason"]) == (ready, phase)


def test_a_steady_state_plans_no_writes() -> None:
    models = listed(generate_models(200, seed=1))
    mirrored = mirror(make_plan(models, [], POLICY, T0))

    again = make_plan(models, mirrored, POLICY, T0 + timedelta(minutes=5))

    assert again.is_empty
    assert sum(again.phase_counts.values()) == 200


def test_a_status_change_updates_status_and_phase_label_with_one_event() -> None:
    mirrored = mirror(make_plan([upstream(status="deploying")], [], POLICY, T0))

    result = make_plan([upstream(status="failed", status_reason="OOMKilled")], mirrored, POLICY, T0)

    [update] = result.updates
    assert update.status is not None
    assert update.status["phase"] == "Failed"
    assert update.labels is not None
    assert update.labels[PHASE_LABEL] == "Failed"
    [event] = result.events
    assert (event.type, event.reason) == ("Warning", "Failed")
    assert "OOMKilled" in event.message


def test_becoming_ready_is_a_normal_event() -> None:
    mirrored = mirror(make_plan([upstream(status="deploying")], [], POLICY, T0))

    [event] = make_plan([upstream(status="ready")], mirrored, POLICY, T0).events

    assert (event.type, event.reason) == ("Normal", "Ready")


def test_last_transition_time_moves_only_when_the_condition_status_changes() -> None:
    mirrored = mirror(make_plan([upstream(status="deploying")], [], POLICY, T0))
    later, later_still = T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)

    failed = make_plan([upstream(status="failed")], mirrored, POLICY, later)
    mirrored = apply(mirrored, failed)
    ready = make_plan([upstream(status="ready")], mirrored, POLICY, later_still)

    def ready_since(result: Plan) -> str:
        [update] = result.updates
        assert update.status is not None
        return str(
            next(c for c in update.status["conditions"] if c["type"] == "Ready")[
                "lastTransitionTime"
            ]
        )

    assert ready_since(failed) == "2026-11-28T12:00:00Z"  # still False: unchanged
    assert ready_since(ready) == "2026-11-28T12:02:00Z"


def test_an_upstream_rename_updates_status_but_keeps_the_object_name() -> None:
    mirrored = mirror(make_plan([upstream()], [], POLICY, T0))

    result = make_plan([upstream(name="renamed")], mirrored, POLICY, T0)

    [update] = result.updates
    assert update.name == mirrored[0].name
    assert update.status is not None
    assert update.status["name"] == "renamed"
    assert not result.creates


def test_a_vanished_model_is_marked_missing_under_retain_and_never_deleted() -> None:
    mirrored = mirror(make_plan([upstream()], [], POLICY, T0))

    first = make_plan([], mirrored, POLICY, T0)
    mirrored = apply(mirrored, first)
    much_later = make_plan([], mirrored, POLICY, T0 + timedelta(days=30))

    [update] = first.updates
    assert update.recipe is None  # merged over the stored status, not replacing it
    assert update.status is not None
    assert update.status["phase"] == "Missing"
    assert update.status["missingSince"] == "2026-11-28T12:00:00Z"
    assert mirrored.statuses[update.name]["name"] == "llama-3-8b-support"  # what it was is kept
    [event] = first.events
    assert (event.type, event.reason) == ("Warning", "Missing")
    assert much_later.is_empty


def test_under_delete_a_missing_model_goes_only_after_the_grace_period() -> None:
    policy = SourcePolicy("team-a", "prod", "Delete", timedelta(minutes=10))
    mirrored = apply([], make_plan([upstream()], [], policy, T0))
    mirrored = apply(mirrored, make_plan([], mirrored, policy, T0))

    within = make_plan([], mirrored, policy, T0 + timedelta(minutes=9))
    after = make_plan([], mirrored, policy, T0 + timedelta(minutes=10))

    assert within.is_empty
    [delete] = after.deletes
    assert delete.model_id == "m-1"


def test_a_model_that_returns_is_no_longer_missing() -> None:
    mirrored = mirror(make_plan([upstream()], [], POLICY, T0))
    mirrored = apply(mirrored, make_plan([], mirrored, POLICY, T0))

    [update] = make_plan([upstream()], mirrored, POLICY, T0).updates

    assert update.status is not None
    assert update.status["phase"] == "Ready"
    assert "missingSince" not in update.status


def test_a_deleted_object_is_recreated() -> None:
    first = make_plan([upstream()], [], POLICY, T0)

    again = make_plan([upstream()], [], POLICY, T0)

    assert [c.name for c in again.creates] == [c.name for c in first.creates]


def test_an_edited_status_or_label_is_restored() -> None:
    created = mirror(make_plan([upstream()], [], POLICY, T0))
    [original] = created
    edited = MirroredModel(
        original.name,
        original.model_id,
        {**original.labels, PHASE_LABEL: "Failed"},
        StoredStatus.of({**created.statuses[original.name], "phase": "Failed"}),
    )

    [update] = make_plan([upstream()], [edited], POLICY, T0).updates

    assert update.labels == original.labels
    assert update.status is not None
    assert update.status["phase"] == "Ready"


def test_an_edit_deep_in_a_free_form_field_is_restored() -> None:
    metadata = {"team": {"owners": ["a", "b"], "tier": 1}}
    created = mirror(make_plan([upstream(model_metadata=metadata)], [], POLICY, T0))
    [original] = created
    status = created.statuses[original.name]
    status["modelMetadata"]["team"]["owners"] = ["intruder"]
    edited = dataclasses.replace(original, status=StoredStatus.of(status))

    [update] = make_plan([upstream(model_metadata=metadata)], [edited], POLICY, T0).updates

    assert update.status is not None
    assert update.status["modelMetadata"] == metadata


def test_duplicate_objects_for_one_model_keep_the_oldest() -> None:
    [original] = mirror(make_plan([upstream()], [], POLICY, T0))
    older = MirroredModel("older", "m-1", original.labels, original.status, "2020-01-01T00:00:00Z")
    newer = MirroredModel("newer", "m-1", original.labels, original.status, "2026-01-01T00:00:00Z")

    result = make_plan([upstream()], [newer, older], POLICY, T0)

    assert [d.name for d in result.deletes] == ["newer"]
    assert not result.creates


def test_env_var_values_are_masked_and_keys_kept() -> None:
    configuration = {"model_image": {"env_vars": {"HF_TOKEN": "hf_secret"}, "tag": "v1"}}

    [create] = make_plan([upstream(vendor_configuration=configuration)], [], POLICY, T0).creates

    image = create.status["vendorConfiguration"]["model_image"]
    assert image == {"env_vars": {"HF_TOKEN": "***"}, "tag": "v1"}


def test_a_huge_vendor_configuration_is_left_out_with_a_condition_and_no_churn() -> None:
    huge = {"model": "x", "blob": "a" * 3_000_000}
    model = upstream(vendor_configuration=huge)

    [create] = make_plan([model], [], POLICY, T0).creates
    again = make_plan(
        [model], mirror(make_plan([model], [], POLICY, T0)), POLICY, T0 + timedelta(hours=1)
    )

    assert "vendorConfiguration" not in create.status
    assert create.status["truncatedFields"] == ["vendorConfiguration"]
    truncated = next(c for c in create.status["conditions"] if c["type"] == "Truncated")
    assert truncated["reason"] == "StatusTooLarge"
    assert create.status["phase"] == "Ready"
    assert again.is_empty


def test_unknown_upstream_fields_are_kept_in_extra_fields() -> None:
    [create] = make_plan([upstream(region="eu-west-1")], [], POLICY, T0).creates

    assert create.status["extraFields"] == {"region": "eu-west-1"}


def test_hostile_names_give_valid_object_names_and_labels() -> None:
    hostile = ["../../etc/passwd", "Ünïcödé ✨ model", "x" * 300, "", "-_-", "a/b=c,d"]
    models = [upstream(id=f"id-{i}", name=name) for i, name in enumerate(hostile)]

    creates = make_plan(models, [], POLICY, T0).creates

    dns1123 = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    assert len({c.name for c in creates}) == len(hostile)
    for create in creates:
        assert len(create.name) <= 63
        assert re.match(dns1123, create.name)
    assert [c.status["name"] for c in creates] == hostile


def test_counts_cover_every_phase_including_missing() -> None:
    mirrored = mirror(
        make_plan([upstream(id="a"), upstream(id="b", status="failed")], [], POLICY, T0)
    )

    result = make_plan([upstream(id="b", status="failed")], mirrored, POLICY, T0)

    assert result.phase_counts["Failed"] == 1
    assert result.phase_counts["Missing"] == 1
    assert result.phase_counts["Ready"] == 0


def test_a_model_whose_id_no_object_can_hold_is_refused_and_the_rest_mirrored() -> None:
    long_id = "x" * (MAX_MODEL_ID_LENGTH + 1)

    result = make_plan([upstream(id=long_id), upstream(id="m-2")], [], POLICY, T0)

    assert result.refused == [long_id]
    assert [create.model_id for create in result.creates] == ["m-2"]


def test_past_the_event_budget_one_event_on_the_source_counts_the_rest() -> None:
    models = [upstream(id=f"m-{n}", name=f"model-{n}") for n in range(MAX_EVENTS_PER_CYCLE + 30)]
    first = make_plan(models, [], POLICY, T0)
    failing = [upstream(id=m.id, name=m.name, status="failed") for m in models]

    result = make_plan(failing, mirror(first), POLICY, T0 + timedelta(minutes=1))

    assert len(result.updates) == len(models)
    *per_model, aggregate = result.events
    assert len(per_model) == MAX_EVENTS_PER_CYCLE
    assert {event.kind for event in per_model} == {"EGPModel"}
    assert (aggregate.kind, aggregate.object_name, aggregate.type) == (
        "EGPSource",
        POLICY.name,
        "Warning",
    )
    assert aggregate.message.startswith("30 more models changed phase")
    assert "30 to Failed" in aggregate.message


def test_a_label_value_with_a_trailing_newline_is_hashed() -> None:
    result = make_plan([upstream(model_vendor="launch\n")], [], POLICY, T0)

    [create] = result.creates
    assert create.labels["egp-operator.io/vendor"].startswith("h-")


def test_object_names_carry_a_64_bit_hash_of_namespace_source_and_id() -> None:
    [create] = make_plan([upstream()], [], POLICY, T0).creates

    assert re.fullmatch(r"llama-3-8b-support-[0-9a-f]{16}", create.name)


def test_a_model_id_label_that_is_not_a_valid_value_carries_a_64_bit_hash() -> None:
    [create] = make_plan([upstream(id="acct/model:7")], [], POLICY, T0).creates

    assert re.fullmatch(r"h-[0-9a-f]{16}", create.labels["egp-operator.io/model-id"])


def test_no_upstream_id_can_spell_another_ids_hashed_label() -> None:
    hashed = make_plan([upstream(id="acct/model:7")], [], POLICY, T0).creates[0]
    lookalike_id = hashed.labels["egp-operator.io/model-id"]  # a valid label value itself

    [create] = make_plan([upstream(id=lookalike_id)], [], POLICY, T0).creates

    assert create.labels["egp-operator.io/model-id"] != lookalike_id


def test_labels_hashed_the_old_way_are_rewritten_by_the_next_cycle() -> None:
    first = make_plan([upstream(id="acct/model:7")], [], POLICY, T0)
    [mirrored] = mirror(first)
    old_label = {**mirrored.labels, "egp-operator.io/model-id": "h-0123456789"}
    stale = dataclasses.replace(mirrored, labels=old_label)

    [update] = make_plan([upstream(id="acct/model:7")], [stale], POLICY, T0).updates

    assert update.labels is not None
    assert (
        update.labels["egp-operator.io/model-id"]
        == first.creates[0].labels["egp-operator.io/model-id"]
    )


# --- Ownership: only the source's own objects are written or deleted ---------------------

OWNED_POLICY = SourcePolicy("team-a", "prod", uid="uid-prod")


def owned_mirror(result: Plan, uid: str = "uid-prod") -> list[MirroredModel]:
    return [dataclasses.replace(m, controller_uid=uid) for m in mirror(result)]


def test_a_look_alike_made_by_hand_is_never_adopted_rewritten_or_deleted() -> None:
    [hand_made] = owned_mirror(make_plan([upstream()], [], OWNED_POLICY, T0), uid="")
    hand_made = dataclasses.replace(hand_made, name="by-hand", status={"phase": "Failed"})

    result = make_plan([upstream()], [hand_made], OWNED_POLICY, T0)

    assert [c.model_id for c in result.creates] == ["m-1"]  # its own mirror, beside it
    assert (result.updates, result.deletes) == ([], [])
    assert result.lookalikes == ["by-hand"]
    [event] = [e for e in result.events if e.kind == "EGPSource"]
    assert (event.type, event.reason) == ("Warning", "UnownedModelsIgnored")
    assert "by-hand" in event.message


def test_an_older_look_alike_does_not_make_the_sources_own_mirror_a_duplicate() -> None:
    [own] = owned_mirror(make_plan([upstream()], [], OWNED_POLICY, T0))
    older = dataclasses.replace(
        own, name="older", creation_timestamp="2000-01-01T00:00:00Z", controller_uid="uid-other"
    )

    result = make_plan([upstream()], [own, older], OWNED_POLICY, T0)

    assert result.deletes == []
    assert result.creates == []


def test_look_alikes_are_reported_when_they_change_not_at_every_cycle() -> None:
    memo = PlanMemo()
    [own] = owned_mirror(make_plan([upstream()], [], OWNED_POLICY, T0))
    lookalike = dataclasses.replace(own, name="by-hand", controller_uid="")

    first = make_plan([upstream()], [own, lookalike], OWNED_POLICY, T0, memo=memo)
    second = make_plan([upstream()], [own, lookalike], OWNED_POLICY, T0, memo=memo)
    gone = make_plan([upstream()], [own], OWNED_POLICY, T0, memo=memo)
    back = make_plan([upstream()], [own, lookalike], OWNED_POLICY, T0, memo=memo)

    assert [e.reason for e in first.events] == ["UnownedModelsIgnored"]
    assert second.events == gone.events == []
    assert [e.reason for e in back.events] == ["UnownedModelsIgnored"]


# --- The object budget: Missing ones included -----------------------------------------------


def test_past_the_object_budget_the_longest_missing_are_deleted_even_under_retain() -> None:
    policy = dataclasses.replace(POLICY, max_models=5)
    mirrored: list[MirroredModel] = []
    for hour, model_id in enumerate(["m-a", "m-b", "m-c", "m-d"]):
        mirrored = apply(mirrored, make_plan([upstream(id=model_id)], mirrored, policy, T0))
        now = T0 + timedelta(hours=hour + 1)  # m-a goes missing first, then m-b, ...
        mirrored = apply(mirrored, make_plan([], mirrored, policy, now))
    new = [upstream(id=f"new-{n}") for n in range(3)]

    result = make_plan(new, mirrored, policy, T0 + timedelta(hours=9))

    assert sorted(d.model_id for d in result.deletes) == ["m-a", "m-b"]
    assert result.pruned == 2
    [event] = [e for e in result.events if e.reason == "MissingPruned"]
    assert (event.kind, event.type) == ("EGPSource", "Warning")
    assert "at most 5 EGPModels" in event.message


def test_an_account_whose_ids_change_at_every_listing_never_exceeds_the_budget() -> None:
    policy = dataclasses.replace(POLICY, max_models=10)
    mirrored: list[MirroredModel] = []
    for cycle in range(8):
        listing = [upstream(id=f"c{cycle}-{n}") for n in range(6)]
        now = T0 + timedelta(minutes=cycle)
        mirrored = apply(mirrored, make_plan(listing, mirrored, policy, now))

        assert len(mirrored) <= 10
        assert {m.model_id for m in mirrored} >= {model.id for model in listing}
