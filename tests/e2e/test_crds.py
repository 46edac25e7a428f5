"""The generated CRDs on a real API server: it defaults and validates EGPSources and EGPModels
as the resource models do, keeps free-form status, prunes the unknown, and prints the columns
`kubectl get` shows."""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from egp_operator.egp.client import DEFAULT_BASE_URL
from egp_operator.resources.crds import UNOBSERVED_STATUS
from egp_operator.resources.models import (
    GROUP,
    MODEL_KIND,
    MODEL_PLURAL,
    SOURCE_KIND,
    SOURCE_PLURAL,
    VERSION,
    Condition,
    CreatedBy,
    EGPModelStatus,
    EGPSourceSpec,
    EGPSourceStatus,
    ModelCounts,
    parse_duration,
)
from egp_testbench.cluster import LocalControlPlane

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
MINIMAL_SOURCE_SPEC = {"credentialsSecretRef": {"name": "egp-credentials"}}
MODEL_SPEC = {"sourceRef": {"name": "prod"}, "modelID": "8e2c5a1e-model"}
# A time in the past of the machine's clock, so that date columns print an age.
NOW = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
AGE = re.compile(r"[0-9]+[smhdy]([0-9]+[smhd])?")  # how kubectl prints a date column: "5s", "3m2s"


@pytest.fixture
def custom(api: Any, crds_installed: list[str]) -> Any:
    """A `CustomObjectsApi` on a cluster where the CRDs are established."""
    return client.CustomObjectsApi(api)


def _object(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }


def _create_source(custom: Any, namespace: str, spec: dict[str, Any], name: str = "prod") -> Any:
    return custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, SOURCE_PLURAL, _object(SOURCE_KIND, name, spec)
    )


def _create_model(custom: Any, namespace: str, name: str = "gpt-4o-1a2b3c") -> Any:
    return custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, MODEL_PLURAL, _object(MODEL_KIND, name, dict(MODEL_SPEC))
    )


def _write_status(
    custom: Any, namespace: str, plural: str, name: str, status: dict[str, Any]
) -> dict[str, Any]:
    """Replace the whole status through the status subresource, as given (no merge)."""
    current = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
    written: dict[str, Any] = custom.replace_namespaced_custom_object_status(
        GROUP, VERSION, namespace, plural, name, {**current, "status": status}
    )
    return written


def _rejection(call: Any) -> tuple[int, str]:
    """The HTTP status and message a call fails with; the test fails if it succeeds."""
    with pytest.raises(ApiException) as caught:
        call()
    return int(caught.value.status), str(json.loads(caught.value.body)["message"])


def _get_table(plane: LocalControlPlane, namespace: str, plural: str) -> dict[str, Any]:
    """The list as `kubectl get` asks for it: a server-side meta.k8s.io Table."""
    request = urllib.request.Request(  # noqa: S310 - https to the local API server only
        f"{plane.server}/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}",
        headers={"Accept": TABLE, "Authorization": f"Bearer {plane.admin_token}"},
    )
    context = ssl.create_default_context(cafile=str(plane.ca_file))
    with urllib.request.urlopen(request, context=context, timeout=30) as response:  # noqa: S310
        table: dict[str, Any] = json.load(response)
    assert table["kind"] == "Table"
    return table


def _default_columns(table: dict[str, Any]) -> list[str]:
    """The columns `kubectl get` prints without `-o wide` (priority 0)."""
    return [c["name"] for c in table["columnDefinitions"] if c.get("priority", 0) == 0]


def _row(table: dict[str, Any], name: str) -> dict[str, Any]:
    """One object's cells, by column name (the wide ones included)."""
    columns = [c["name"] for c in table["columnDefinitions"]]
    row = next(r for r in table["rows"] if r["object"]["metadata"]["name"] == name)
    return dict(zip(columns, row["cells"], strict=True))


# ---- EGPSource: defaults and validation ----------------------------------------------------


def test_minimal_source_is_read_back_with_every_default_filled_in(
    custom: Any, namespace: str
) -> None:
    _create_source(custom, namespace, MINIMAL_SOURCE_SPEC)

    read = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, SOURCE_PLURAL, "prod")

    assert read["spec"] == {
        "baseURL": DEFAULT_BASE_URL,
        "credentialsSecretRef": {"name": "egp-credentials", "key": "apiKey"},
        "refreshInterval": "60s",
        "pageSize": 500,
        "deletionPolicy": "Retain",
        "missingGracePeriod": "1h",
        "suspend": False,
    }
    assert read["spec"] == EGPSourceSpec.model_validate(MINIMAL_SOURCE_SPEC).to_k8s()


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("pageSize", 0, "greater than or equal to 1"),
        ("pageSize", 1001, "less than or equal to 1000"),
        ("refreshInterval", "5s", "must be at least 10s"),
        ("refreshInterval", "soon", "should match"),
        ("refreshInterval", "25h", "must be at most 24h"),
        ("refreshInterval", "1000000000000h", "spec.refreshInterval"),
        ("missingGracePeriod", "8761h", "must be at most 8760h"),
        ("missingGracePeriod", "1 hour", "should match"),
        ("deletionPolicy", "Purge", 'supported values: "Retain", "Delete"'),
    ],
)
def test_source_with_an_invalid_field_is_rejected_naming_the_field(
    custom: Any, namespace: str, field: str, value: Any, why: str
) -> None:
    spec = {**MINIMAL_SOURCE_SPEC, field: value}

    status, message = _rejection(lambda: _create_source(custom, namespace, spec))

    assert status == 422
    assert f"spec.{field}: " in message
    assert why in message


def test_source_without_credentials_is_rejected(custom: Any, namespace: str) -> None:
    status, message = _rejection(lambda: _create_source(custom, namespace, {"pageSize": 10}))

    assert status == 422
    assert "spec.credentialsSecretRef" in message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("refreshInterval", "10s"),
        ("refreshInterval", "1h30m"),
        ("missingGracePeriod", "0s"),
        ("missingGracePeriod", "2h5m30s"),
    ],
)
def test_source_with_a_duration_the_operator_parses_is_accepted(
    custom: Any, namespace: str, field: str, value: str
) -> None:
    parse_duration(value)

    created = _create_source(custom, namespace, {**MINIMAL_SOURCE_SPEC, field: value})

    assert created["spec"][field] == value


# ---- EGPModel: identity and status ---------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"), [("modelID", "another-model"), ("sourceRef", {"name": "staging"})]
)
def test_model_identity_cannot_be_changed(
    custom: Any, namespace: str, field: str, value: Any
) -> None:
    _create_model(custom, namespace)

    status, message = _rejection(
        lambda: custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, MODEL_PLURAL, "gpt-4o-1a2b3c", {"spec": {field: value}}
        )
    )

    assert status == 422
    assert f"spec.{field}" in message
    assert "immutable" in message


def test_model_status_is_written_through_the_status_subresource(
    custom: Any, namespace: str
) -> None:
    _create_model(custom, namespace)

    _write_status(custom, namespace, MODEL_PLURAL, "gpt-4o-1a2b3c", {"phase": "Deploying"})

    read = custom.get_namespaced_custom_object(
        GROUP, VERSION, namespace, MODEL_PLURAL, "gpt-4o-1a2b3c"
    )
    assert read["status"] == {"phase": "Deploying"}


def test_status_sent_with_the_object_itself_is_ignored(custom: Any, namespace: str) -> None:
    body = {**_object(MODEL_KIND, "gpt-4o-1a2b3c", dict(MODEL_SPEC)), "status": {"name": "x"}}

    created = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, MODEL_PLURAL, body)

    assert created["status"] == UNOBSERVED_STATUS


@pytest.mark.parametrize("plural", [SOURCE_PLURAL, MODEL_PLURAL])
def test_an_object_the_operator_has_not_seen_reads_in_progress_to_kstatus(
    custom: Any, namespace: str, kstatus: Path, plural: str
) -> None:
    """Flux's `wait` right after an apply must not pass before the operator has looked."""
    if plural == SOURCE_PLURAL:
        _create_source(custom, namespace, MINIMAL_SOURCE_SPEC)
        name = "prod"
    else:
        _create_model(custom, namespace)
        name = "gpt-4o-1a2b3c"
    read = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)

    verdict = subprocess.run(
        [str(kstatus)], input=json.dumps(read), capture_output=True, text=True, check=True
    )

    assert json.loads(verdict.stdout)["status"] == "InProgress"


def test_free_form_status_fields_keep_unknown_nested_fields(custom: Any, namespace: str) -> None:
    _create_model(custom, namespace)
    vendor_configuration = {
        "model_image": {"env_vars": {"A": "***"}, "future_knob": {"depth": [1, {"x": True}]}},
        "brand_new_section": "kept",
    }
    extra_fields = {"launched_in": "2026", "limits": {"rpm": 600}, "tags": ["a", "b"]}

    written = _write_status(
        custom,
        namespace,
        MODEL_PLURAL,
        "gpt-4o-1a2b3c",
        {
            "vendorConfiguration": vendor_configuration,
            "modelMetadata": ["any", "json"],
            "extraFields": extra_fields,
        },
    )

    assert written["status"]["vendorConfiguration"] == vendor_configuration
    assert written["status"]["modelMetadata"] == ["any", "json"]
    assert written["status"]["extraFields"] == extra_fields


def test_unknown_status_field_is_pruned(custom: Any, namespace: str) -> None:
    _create_model(custom, namespace)

    written = _write_status(
        custom,
        namespace,
        MODEL_PLURAL,
        "gpt-4o-1a2b3c",
        {"name": "gpt-4o", "notInTheSchema": "dropped", "createdBy": {"userID": "u", "x": 1}},
    )

    assert written["status"] == {"name": "gpt-4o", "createdBy": {"userID": "u"}}


def test_model_status_rendered_by_the_resource_model_is_stored_unchanged(
    custom: Any, namespace: str
) -> None:
    _create_model(custom, namespace)
    status = EGPModelStatus(
        phase="Ready",
        name="gpt-4o",
        vendor="openai",
        type="chat_completion",
        status="ready",
        status_reason="",
        availability="available",
        created_at="2025-06-01T10:00:00.123456",
        created_by=CreatedBy(user_id="user-1", identity_type="user"),
        vendor_configuration={"model_name": "gpt-4o", "nested": {"none": None, "list": [None]}},
        model_metadata={"context": 128000},
        extra_fields={"new_field": None, "other": 1.5},
        truncated_fields=["modelMetadata"],
        missing_since=NOW,
        observed_generation=1,
        conditions=[
            Condition(type="Ready", status="True", reason="Ready", last_transition_time=NOW),
            Condition(
                type="Synced",
                status="True",
                reason="Synced",
                message="seen upstream",
                last_transition_time=NOW,
            ),
        ],
    ).to_k8s()

    written = _write_status(custom, namespace, MODEL_PLURAL, "gpt-4o-1a2b3c", status)

    assert written["status"] == status


def test_source_status_rendered_by_the_resource_model_is_stored_unchanged(
    custom: Any, namespace: str
) -> None:
    _create_source(custom, namespace, MINIMAL_SOURCE_SPEC)
    status = EGPSourceStatus(
        conditions=[
            Condition(
                type="Ready",
                status="False",
                reason="Unauthorized",
                message="401",
                last_transition_time=NOW,
            )
        ],
        models=ModelCounts(total=3, ready=2, failed=1),
        last_sync_time=NOW,
        last_successful_sync_time=NOW,
        observed_generation=1,
        message="the API key was refused",
    ).to_k8s()

    written = _write_status(custom, namespace, SOURCE_PLURAL, "prod", status)

    assert written["status"] == status


# ---- what `kubectl get` prints -------------------------------------------------------------


def test_models_are_selected_by_phase_source_and_id_with_a_field_selector(
    custom: Any, namespace: str
) -> None:
    """`kubectl get egpm --field-selector status.phase=Failed` (selectableFields, in every
    supported Kubernetes: docs/compatibility.md)."""
    phases = {"failed-one": "Failed", "ready-one": "Ready", "deploying-one": "Deploying"}
    for name, phase in phases.items():
        body = _object(MODEL_KIND, name, {**MODEL_SPEC, "modelID": f"id-{name}"})
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, MODEL_PLURAL, body)
        _write_status(custom, namespace, MODEL_PLURAL, name, {"phase": phase})

    def selected(selector: str) -> set[str]:
        listed = custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, MODEL_PLURAL, field_selector=selector
        )
        return {item["metadata"]["name"] for item in listed["items"]}

    assert selected("status.phase=Failed") == {"failed-one"}
    assert selected("status.phase!=Ready") == {"failed-one", "deploying-one"}
    assert selected("spec.modelID=id-ready-one") == {"ready-one"}
    assert selected("spec.sourceRef.name=prod") == set(phases)
    assert selected("spec.sourceRef.name=other") == set()


def test_model_table_shows_model_vendor_type_status_ready_since_and_age(
    control_plane: LocalControlPlane, custom: Any, namespace: str
) -> None:
    _create_model(custom, namespace)
    _write_status(
        custom,
        namespace,
        MODEL_PLURAL,
        "gpt-4o-1a2b3c",
        {
            "phase": "Ready",
            "phaseSince": NOW,
            "history": [],
            "name": "gpt-4o",
            "vendor": "openai",
            "type": "chat_completion",
            "status": "ready",
            "conditions": [
                {"type": "Synced", "status": "True", "reason": "Synced", "lastTransitionTime": NOW},
                {"type": "Ready", "status": "True", "reason": "Ready", "lastTransitionTime": NOW},
            ],
        },
    )

    table = _get_table(control_plane, namespace, MODEL_PLURAL)
    columns, row = _default_columns(table), _row(table, "gpt-4o-1a2b3c")

    assert columns == ["Name", "Model", "Vendor", "Type", "Status", "Ready", "Since", "Age"]
    assert {k: row[k] for k in columns if k not in ("Since", "Age")} == {
        "Name": "gpt-4o-1a2b3c",
        "Model": "gpt-4o",
        "Vendor": "openai",
        "Type": "chat_completion",
        "Status": "ready",
        "Ready": "True",
    }
    assert AGE.fullmatch(row["Age"])
    assert AGE.fullmatch(row["Since"])
    assert (row["Phase"], row["Model ID"]) == ("Ready", MODEL_SPEC["modelID"])
    assert row["Flapping"] is None  # present only while the model flaps


def test_source_table_shows_account_ready_models_last_sync_and_age(
    control_plane: LocalControlPlane, custom: Any, namespace: str
) -> None:
    _create_source(custom, namespace, {**MINIMAL_SOURCE_SPEC, "accountID": "acct-1"})
    _write_status(
        custom,
        namespace,
        SOURCE_PLURAL,
        "prod",
        {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Answering",
                    "lastTransitionTime": NOW,
                }
            ],
            "models": {"total": 42},
            "lastSyncTime": NOW,
        },
    )

    table = _get_table(control_plane, namespace, SOURCE_PLURAL)
    columns, row = _default_columns(table), _row(table, "prod")

    assert columns == ["Name", "Account", "Ready", "Models", "Last Sync", "Age"]
    assert (row["Account"], row["Ready"], row["Models"]) == ("acct-1", "True", 42)
    assert AGE.fullmatch(row["Last Sync"])
