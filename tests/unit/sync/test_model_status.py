"""What upstream writes into an EGPModel's status is bounded: strings are capped, free-form
fields too deep or too big are left out and said so, and the status always fits."""

from __future__ import annotations

import json
from typing import Any

import pytest

from egp_operator.bounds import (
    MAX_FREE_FORM_BYTES,
    MAX_JSON_DEPTH,
    MAX_MESSAGE_LENGTH,
    MAX_STATUS_BYTES,
    MAX_TEXT_LENGTH,
    MAX_WORD_LENGTH,
)
from egp_operator.egp import InferenceModel
from egp_operator.sync.mirrored import StoredStatus
from egp_operator.sync.model_status import missing_status, observed_status
from egp_operator.sync.upstream import UpstreamModel, keep_for_mirror

NOW = "2026-11-29T12:00:00Z"


def model(**fields: Any) -> UpstreamModel:
    """A listed model as a cycle keeps it (upstream.py bounds it there)."""
    return keep_for_mirror(InferenceModel.model_validate({"id": "m-1", "status": "ready"} | fields))


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"next": value}
    return value


def size(status: dict[str, Any]) -> int:
    return len(json.dumps(status, separators=(",", ":")))


def test_every_upstream_string_is_capped() -> None:
    huge = "x" * 100_000

    status = observed_status(
        model(
            name=huge,
            status=huge,
            model_vendor=huge,
            model_type=huge,
            status_reason=huge,
            model_availability=huge,
            created_at=huge,
            created_by_user_id=huge,
            created_by_identity_type=huge,
        ),
        now=NOW,
        previous=StoredStatus(),
    )

    assert len(status["name"]) == len(status["statusReason"]) == MAX_TEXT_LENGTH
    for word in (status["status"], status["vendor"], status["type"], status["createdAt"]):
        assert len(word) == MAX_WORD_LENGTH
    assert all(len(c["message"]) <= MAX_MESSAGE_LENGTH for c in status["conditions"])
    assert size(status) < MAX_STATUS_BYTES


def test_a_free_form_field_nested_too_deeply_is_left_out_and_said_so() -> None:
    status = observed_status(
        model(vendor_configuration=nested(900), model_metadata={"team": "a"}),
        now=NOW,
        previous=StoredStatus(),
    )

    assert "vendorConfiguration" not in status
    assert status["modelMetadata"] == {"team": "a"}
    assert status["truncatedFields"] == ["vendorConfiguration"]
    truncated = next(c for c in status["conditions"] if c["type"] == "Truncated")
    assert f"nested deeper than {MAX_JSON_DEPTH} levels" in truncated["message"]


def test_a_free_form_field_at_the_depth_limit_is_kept() -> None:
    status = observed_status(
        model(vendor_configuration=nested(MAX_JSON_DEPTH)), now=NOW, previous=StoredStatus()
    )

    assert "truncatedFields" not in status
    assert status["vendorConfiguration"] == nested(MAX_JSON_DEPTH)


def test_thousands_of_unknown_fields_are_left_out_when_the_status_would_not_fit() -> None:
    extras = {f"field_{n}": "v" * 200 for n in range(5_000)}

    status = observed_status(
        model(model_metadata={"team": "a"}, **extras), now=NOW, previous=StoredStatus()
    )

    assert status["truncatedFields"] == ["extraFields"]
    assert status["modelMetadata"] == {"team": "a"}
    truncated = next(c for c in status["conditions"] if c["type"] == "Truncated")
    assert "the free-form fields together exceed 16 KiB" in truncated["message"]


def test_free_form_fields_are_kept_within_their_bound_biggest_role_first() -> None:
    big = {"blob": "x" * (MAX_FREE_FORM_BYTES // 2 + 1)}

    status = observed_status(
        model(vendor_configuration=big, model_metadata=big), now=NOW, previous=StoredStatus()
    )

    assert status["truncatedFields"] == ["vendorConfiguration"]
    assert status["modelMetadata"] == big


def test_a_page_of_empty_objects_is_kept_as_a_few_bytes_per_model() -> None:
    """What a listing keeps of a model padded with thousands of empty JSON objects (30 times
    their bytes once decoded): its bounded, compact text, or nothing."""
    kept = model(padding=[{}] * 100_000)

    assert kept.left_out == (("extraFields", "the free-form fields together exceed 16 KiB"),)
    assert kept.kept_bytes < 2 * 1024


@pytest.mark.parametrize(
    ("upstream", "reconciling", "stalled"),
    [
        ("ready", "False", "False"),
        ("deploying", "True", "False"),
        ("failed", "False", "True"),
        ("deployment_timeout", "False", "True"),
        ("paused", "True", "False"),  # a status this version does not know: not a failure
    ],
)
def test_each_phase_sets_the_conditions_kstatus_reads(
    upstream: str, reconciling: str, stalled: str
) -> None:
    status = observed_status(
        model(status=upstream, status_reason="Container exited with code 137"),
        now=NOW,
        previous=StoredStatus(),
    )

    conditions = {c["type"]: c for c in status["conditions"]}
    assert (conditions["Reconciling"]["status"], conditions["Stalled"]["status"]) == (
        reconciling,
        stalled,
    )
    holding = [c for c in conditions.values() if c["type"] in ("Reconciling", "Stalled")]
    for held in holding:
        assert held["reason"] == status["phase"]
        if held["status"] == "True":
            assert held["message"] == "Container exited with code 137"
    assert status["observedGeneration"] == 1


def test_a_model_gone_upstream_is_stalled() -> None:
    present = observed_status(model(), now=NOW, previous=StoredStatus())

    status = missing_status(StoredStatus.of(present), now=NOW)

    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert (conditions["Reconciling"], conditions["Stalled"]) == ("False", "True")
