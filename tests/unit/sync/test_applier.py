"""The applier writes a plan, and after a 409 on create writes only onto its own mirror."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from egp_operator.kube import KubeError
from egp_operator.sync.applier import Applier, SourceIdentity
from egp_operator.sync.planner import Create, Plan
from tests.unit.sync.fake_kube import FakeKube

SOURCE = SourceIdentity("team-a", "prod", "uid-source")
NOW = datetime(2026, 11, 29, tzinfo=UTC)
CREATE = Create("model-abc", "m-1", {"egp-operator.io/model-id": "m-1"}, {"phase": "Ready"})
PATH = "/apis/egp-operator.io/v1alpha1/namespaces/team-a/egpmodels/model-abc"


def holder(model_id: str, source: str = "prod", uid: str = "uid-source") -> dict[str, Any]:
    return {
        "metadata": {"name": "model-abc", "ownerReferences": [{"uid": uid}]},
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
    for other in (holder("m-2"), holder("m-1", source="other"), holder("m-1", uid="uid-old")):
        kube = FakeKube({PATH: other})

        result = await apply_create(kube)

        assert kube.status_writes() == []
        [error] = result.errors
        assert "held by an object that is not this source's mirror" in error
