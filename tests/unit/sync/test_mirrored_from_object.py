"""The index holds what a plan reads of each EGPModel and a digest of its status, not the
status itself: its memory grows with the number of models, not with what their free-form fields
hold, and what every model repeats (keys, condition types, reasons) is held once."""

from __future__ import annotations

import gc
import json
import tracemalloc
from typing import Any

from egp_operator.egp import InferenceModel
from egp_operator.sync.mirrored import mirrored_from_object, shared_strings, status_digest
from egp_operator.sync.upstream import keep_for_mirror


def egpmodel(name: str, message: str = "ok", **status: Any) -> dict[str, Any]:
    """An EGPModel as a watch event decodes it: every string its own object."""
    body = {
        "metadata": {
            "name": name,
            "labels": {"egp-operator.io/phase": "Ready"},
            "ownerReferences": [
                {"kind": "EGPSource", "name": "prod", "uid": "uid-prod", "controller": True}
            ],
        },
        "spec": {"modelID": name},
        "status": {
            "phase": "Ready",
            "vendor": "launch",
            "statusReason": message,
            "conditions": [{"type": "Ready", "status": "True", "reason": "Ready"}],
            **status,
        },
    }
    decoded: dict[str, Any] = json.loads(json.dumps(body))
    return decoded


def test_the_index_keeps_what_a_plan_reads_and_the_controller() -> None:
    mirrored = mirrored_from_object(egpmodel("a", missingSince="2026-12-01T00:00:00Z"))

    assert (mirrored.status.phase, mirrored.status.vendor) == ("Ready", "launch")
    assert mirrored.status.missing_since == "2026-12-01T00:00:00Z"
    assert mirrored.status.conditions[0]["reason"] == "Ready"
    assert mirrored.controller_uid == "uid-prod"


def test_an_owner_that_is_not_the_controller_is_not_taken_for_one() -> None:
    body = egpmodel("a")
    body["metadata"]["ownerReferences"][0]["controller"] = False

    assert mirrored_from_object(body).controller_uid == ""


def test_free_form_fields_do_not_stay_in_the_index() -> None:
    """Models with 6 KiB of metadata each (an empty JSON object in every slot, ~80 KiB once
    decoded) hold a few KiB each once indexed: the status stays in etcd, its digest here."""
    bodies = [egpmodel(f"m-{n}", modelMetadata={"pad": [{}] * 2_000}) for n in range(200)]
    gc.collect()
    tracemalloc.start()
    index = [mirrored_from_object(body) for body in bodies]
    del bodies
    gc.collect()
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert len(index) == 200
    assert held / len(index) < 4 * 1024


def test_two_models_share_their_keys_and_short_strings() -> None:
    first = mirrored_from_object(egpmodel("a"))
    second = mirrored_from_object(egpmodel("b"))

    [key_a], [key_b] = first.labels, second.labels
    assert key_a is key_b
    ready_a, ready_b = first.status.conditions[0], second.status.conditions[0]
    assert ready_a["reason"] is ready_b["reason"]
    assert next(iter(ready_a)) is next(iter(ready_b))


def test_a_status_reads_back_as_equal_whatever_the_api_server_did_to_it() -> None:
    """As the real API server did with a status (keys sorted; nested nulls kept)."""
    written = {"phase": "Ready", "modelMetadata": {"b": 1, "a": [True, None], "c": {"d": None}}}
    stored = {"modelMetadata": {"a": [True, None], "b": 1, "c": {"d": None}}, "phase": "Ready"}

    assert status_digest(written) == status_digest(stored)


def test_whole_floats_are_built_as_the_api_server_writes_them_back() -> None:
    """The API server reads `2.0` and writes back `2` (and `1e16` as `10000000000000000`):
    a status built with the floats would never read back equal, and be written every cycle."""
    listed = InferenceModel.model_validate(
        {"id": "m", "model_metadata": {"cpus": 2.0, "big": 1e16, "ratio": 2.5, "huge": 1e300}}
    )

    metadata = keep_for_mirror(listed).free_form_fields()["modelMetadata"]

    assert metadata == {"cpus": 2, "big": 10_000_000_000_000_000, "ratio": 2.5, "huge": 1e300}
    assert [type(metadata[key]) for key in ("cpus", "big", "ratio", "huge")] == [
        int,
        int,
        float,
        float,
    ]


def test_a_changed_status_has_another_digest() -> None:
    status = {"phase": "Ready", "modelMetadata": {"replicas": 1}}

    assert status_digest(status) != status_digest({**status, "phase": "Failed"})
    assert status_digest(status) != status_digest({**status, "modelMetadata": {"replicas": 2}})
    assert status_digest(status) != status_digest({**status, "modelMetadata": {"replicas": True}})
    assert status_digest(status) != status_digest({**status, "modelMetadata": {"replicas": None}})


def test_a_status_too_deep_to_walk_has_no_digest() -> None:
    deep: Any = "leaf"
    for _ in range(100_000):
        deep = [deep]

    assert status_digest({"modelMetadata": deep}) is None


def test_a_document_too_deep_to_walk_is_kept_as_it_is() -> None:
    deep: Any = "leaf"
    for _ in range(100_000):
        deep = [deep]

    assert shared_strings(deep) is deep
