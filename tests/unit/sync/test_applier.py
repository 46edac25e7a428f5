"""The applier writes a plan, and after a 409 on create writes only onto its own mirror."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from egp_operator.egp import InferenceModel
from egp_operator.kube import KubeError
from egp_operator.sync.applier import Applier, SourceIdentity
from egp_operator.sync.mirrored import EMPTY_STATUS
from egp_operator.sync.model_status import StatusRecipe
from egp_operator.sync.planner import Create, Delete, Event, Plan, Update
from egp_operator.sync.upstream import keep_for_mirror
from egp_testbench.fake_kube import FakeKube

SOURCE = SourceIdentity("team-a", "prod", "uid-source")
NOW = datetime(2026, 11, 29, tzinfo=UTC)


def recipe(status: str = "ready", model_id: str = "m-1") -> StatusRecipe:
    listed = InferenceModel.model_validate({"id": model_id, "status": status})
    return StatusRecipe(keep_for_mirror(listed), EMPTY_STATUS, "2026-11-29T00:00:00Z")


CREATE = Create("model-abc", "m-1", {"egp-operator.io/model-id": "m-1"}, recipe())
PATH = "/apis/egp-operator.io/v1alpha1/namespaces/team-a/egpmodels/model-abc"


def holder(
    model_id: str, source: str = "prod", uid: str = "uid-source", *, controller: bool = True
) -> dict[str, Any]:
    owner = {"kind": "EGPSource", "uid": uid, "controller": controller}
    return {
        "metadata": {"name": "model-abc", "ownerReferences": [owner]},
        "spec": {"modelID": model_id, "sourceRef": {"name": source}},
    }


async def apply_create(kube: FakeKube) -> Any:
    kube.create_errors["model-abc"] = KubeError(409, "AlreadyExists", "exists")
    return await Applier(kube).apply(Plan(creates=[CREATE]), SOURCE, {}, NOW)


async def test_a_name_already_held_by_this_sources_mirror_of_the_model_converges() -> None:
    kube = FakeKube({PATH: holder("m-1")})

    result = await apply_create(kube)

    assert result.errors == []
    assert result.converged == 1
    assert kube.status_writes() == [[{"op": "add", "path": "/status", "value": CREATE.status}]]


async def test_a_name_held_by_another_model_is_left_alone_and_reported() -> None:
    for other in (
        holder("m-2"),
        holder("m-1", source="other"),
        holder("m-1", uid="uid-old"),
        holder("m-1", controller=False),  # owned, but not controlled, by the source
    ):
        kube = FakeKube({PATH: other})

        result = await apply_create(kube)

        assert kube.status_writes() == []
        [error] = result.errors
        assert "held by an object that is not this source's mirror" in error


async def test_a_create_writes_the_object_owned_by_its_source_then_its_status() -> None:
    kube = FakeKube()

    result = await Applier(kube).apply(Plan(creates=[CREATE]), SOURCE, {}, NOW)

    assert (result.created, result.errors) == (1, [])
    [(first, _, body), (second, path, operations)] = kube.requests
    assert (first, second) == ("POST", "PATCH")
    assert path == f"{PATH}/status"  # the status subresource: a create cannot set it
    assert operations == [{"op": "add", "path": "/status", "value": CREATE.status}]
    [owner] = body["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("EGPSource", "prod", "uid-source")
    assert owner["controller"] is True


async def test_an_object_deleted_under_an_update_converges_next_cycle_not_an_error() -> None:
    kube = FakeKube()
    kube.errors["PATCH", f"{PATH}/status"] = KubeError(404, "NotFound", "gone")
    update = Update("model-abc", "m-1", labels=None, recipe=recipe("failed"))

    result = await Applier(kube).apply(Plan(updates=[update]), SOURCE, {}, NOW)

    assert result.errors == []
    assert result.converged == 1


async def test_a_failed_label_write_is_reported_and_the_status_left_for_the_next_cycle() -> None:
    kube = FakeKube()
    kube.errors["PATCH", PATH] = KubeError(500, "InternalError", "etcd timeout")
    update = Update("model-abc", "m-1", labels={"a": "b"}, recipe=recipe("failed"))

    result = await Applier(kube).apply(Plan(updates=[update]), SOURCE, {}, NOW)

    assert kube.status_writes() == []
    [error] = result.errors
    assert "label model-abc" in error


async def test_deleting_what_is_already_gone_is_not_an_error() -> None:
    kube = FakeKube()
    kube.errors["DELETE", PATH] = KubeError(404, "NotFound", "gone")
    gone = Delete("model-abc", "m-1", "missing for 1h")

    result = await Applier(kube).apply(Plan(deletes=[gone]), SOURCE, {}, NOW)

    assert (result.deleted, result.errors) == (0, [])


async def test_an_event_that_cannot_be_posted_does_not_fail_the_cycle() -> None:
    kube = FakeKube()
    kube.errors["POST", "/api/v1/namespaces/team-a/events"] = KubeError(403, "Forbidden", "no")
    event = Event("model-abc", "Warning", "Failed", "Phase changed from Ready to Failed")

    result = await Applier(kube).apply(Plan(events=[event]), SOURCE, {"model-abc": "u"}, NOW)

    assert (result.events, result.errors) == (0, [])


QUOTA = KubeError(
    403,
    "Forbidden",
    'egpmodels.egp-operator.io "model-2" is forbidden: exceeded quota: models,'
    " requested: count/egpmodels.egp-operator.io=1, used: count/egpmodels.egp-operator.io=5,"
    " limited: count/egpmodels.egp-operator.io=5",
)


async def test_past_a_quota_refusal_no_more_creates_are_sent_and_the_refusal_is_counted() -> None:
    kube = FakeKube()
    kube.concurrency = 1
    creates = [Create(f"model-{n}", f"m-{n}", {}, recipe(model_id=f"m-{n}")) for n in range(10)]
    kube.create_errors["model-2"] = QUOTA

    result = await Applier(kube).apply(Plan(creates=creates), SOURCE, {}, NOW)

    assert len(kube.paths("POST")) == 3  # model-0, model-1, then the refused model-2
    assert (result.created, result.quota_refused, result.errors) == (2, 8, [])
    assert "exceeded quota" in result.quota_message


async def test_deletes_are_done_before_any_create_so_creates_can_use_what_they_free() -> None:
    kube = FakeKube()
    plan = Plan(
        creates=[Create("model-new", "m-new", {}, recipe(model_id="m-new"))],
        deletes=[Delete("model-abc", "m-1", "missing")],
    )

    await Applier(kube).apply(plan, SOURCE, {}, NOW)

    assert [verb for verb, _, _ in kube.requests][:2] == ["DELETE", "POST"]


async def test_a_missing_model_gets_only_its_changes_merged_over_its_status() -> None:
    kube = FakeKube()
    changes = {"phase": "Missing", "missingSince": "2026-11-29T00:00:00Z", "conditions": []}
    update = Update("model-abc", "m-1", labels=None, status_changes=changes)

    await Applier(kube).apply(Plan(updates=[update]), SOURCE, {}, NOW)

    assert kube.requests == [("PATCH", f"{PATH}/status", {"status": changes})]
