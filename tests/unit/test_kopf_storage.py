from typing import Any

import kopf

from egp_operator.kopf_storage import StatuslessDiffBaseStorage

BODY: dict[str, Any] = {
    "apiVersion": "egp-operator.io/v1alpha1",
    "kind": "EGPModel",
    "metadata": {
        "name": "llama-3-8b-1a2b3c4d5e",
        "namespace": "team-a",
        "uid": "0d6a4c1e",
        "labels": {"egp-operator.io/source": "prod", "egp-operator.io/phase": "Ready"},
        "annotations": {
            "team": "ml-platform",
            "kubectl.kubernetes.io/last-applied-configuration": "{}",
            "egp-operator.io/last-handled-configuration": '{"spec":{"modelID":"old"}}\n',
            "kopf.zalando.org/touch-dummy": "x",
        },
        "managedFields": [{"manager": "egp-operator", "fieldsV1": {"f:status": {}}}],
    },
    "spec": {"sourceRef": {"name": "prod"}, "modelID": "m-1"},
    "status": {"phase": "Ready", "vendorConfiguration": {"model_image": {"tag": "1"}}},
}


def _both(**kwargs: Any) -> tuple[kopf.BodyEssence, kopf.BodyEssence]:
    options = {"prefix": "egp-operator.io", "key": "last-handled-configuration"}
    ours = StatuslessDiffBaseStorage(**options).build(body=kopf.Body(BODY), **kwargs)
    kopfs = kopf.AnnotationsDiffBaseStorage(**options).build(body=kopf.Body(BODY), **kwargs)
    return ours, kopfs


def test_the_essence_is_the_one_kopf_builds() -> None:
    ours, kopfs = _both()
    assert ours == kopfs
    assert ours["spec"] == BODY["spec"]
    assert ours["metadata"]["labels"] == BODY["metadata"]["labels"]


def test_a_tracked_status_field_is_still_in_the_essence() -> None:
    ours, kopfs = _both(extra_fields=["status.phase"])
    assert ours == kopfs
    assert ours["status"] == {"phase": "Ready"}
