"""The CRDs generated from the resource models: structural, defaulted, validated and printable
as the design says, and the YAML committed under `crds/` is what the generator produces now."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, Field

from egp_operator.egp.client import DEFAULT_BASE_URL
from egp_operator.resources.crds import (
    DURATION_PATTERN,
    build_crds,
    openapi_schema,
    render_crd_files,
    render_crds_yaml,
    write_crds,
)
from egp_operator.resources.models import parse_duration
from egp_operator.vocabulary import PHASES

REPO_ROOT = Path(__file__).resolve().parents[3]
CRDS_DIR = REPO_ROOT / "crds"
KINDS = ("EGPSource", "EGPModel")


def _crd(kind: str) -> dict[str, Any]:
    return next(crd for crd in build_crds() if crd["spec"]["names"]["kind"] == kind)


def _version(kind: str) -> dict[str, Any]:
    versions: list[dict[str, Any]] = _crd(kind)["spec"]["versions"]
    assert len(versions) == 1
    return versions[0]


def _schema(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = _version(kind)["schema"]["openAPIV3Schema"]
    return schema


def _spec(kind: str) -> dict[str, Any]:
    spec: dict[str, Any] = _schema(kind)["properties"]["spec"]
    return spec


def _status(kind: str) -> dict[str, Any]:
    status: dict[str, Any] = _schema(kind)["properties"]["status"]
    return status


def _nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its path (`.a.b`, `[]` for items, `.*` for map values)."""
    yield path, schema
    for name, prop in schema.get("properties", {}).items():
        yield from _nodes(prop, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _nodes(schema["additionalProperties"], f"{path}.*")


def _columns(kind: str) -> list[tuple[str, str, str, int]]:
    return [
        (c["name"], c["type"], c["jsonPath"], c.get("priority", 0))
        for c in _version(kind)["additionalPrinterColumns"]
    ]


# ---- the committed files -------------------------------------------------------------------


def test_committed_crd_files_match_the_generator() -> None:
    stale = [
        name
        for name, text in render_crd_files().items()
        if not (CRDS_DIR / name).is_file() or (CRDS_DIR / name).read_text() != text
    ]

    assert not stale, (
        f"crds/{', crds/'.join(stale)} differ from the resource models: regenerate with `make crds`"
    )


def test_write_crds_writes_one_file_per_crd_named_group_and_plural(tmp_path: Path) -> None:
    paths = write_crds(tmp_path / "crds")

    assert [p.name for p in paths] == [
        "egp-operator.io_egpsources.yaml",
        "egp-operator.io_egpmodels.yaml",
    ]
    assert [yaml.safe_load(p.read_text()) for p in paths] == build_crds()


def test_rendered_yaml_is_both_crds_as_documents_ending_with_a_newline() -> None:
    text = render_crds_yaml()

    assert text.endswith("\n")
    assert list(yaml.safe_load_all(text)) == build_crds()


# ---- names, scope, versions ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "plural", "short_name"),
    [("EGPSource", "egpsources", "egps"), ("EGPModel", "egpmodels", "egpm")],
)
def test_crd_names_the_kind_with_its_short_name_and_the_egp_category(
    kind: str, plural: str, short_name: str
) -> None:
    crd = _crd(kind)

    assert crd["metadata"]["name"] == f"{plural}.egp-operator.io"
    assert crd["spec"]["names"] == {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": plural,
        "singular": kind.lower(),
        "shortNames": [short_name],
        "categories": ["egp"],
    }


@pytest.mark.parametrize("kind", KINDS)
def test_crd_is_namespaced_with_one_served_storage_version_v1alpha1(kind: str) -> None:
    crd = _crd(kind)
    version = _version(kind)

    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["spec"]["group"] == "egp-operator.io"
    assert crd["spec"]["scope"] == "Namespaced"
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)


@pytest.mark.parametrize("kind", KINDS)
def test_status_is_a_subresource(kind: str) -> None:
    assert _version(kind)["subresources"] == {"status": {}}


# ---- structural schema ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "keyword", ["$ref", "$defs", "anyOf", "oneOf", "allOf", "title", "const", "uniqueItems"]
)
def test_schema_has_no_pydantic_only_keyword(kind: str, keyword: str) -> None:
    assert [path for path, node in _nodes(_schema(kind)) if keyword in node] == []


@pytest.mark.parametrize("kind", KINDS)
def test_every_schema_node_has_a_type_unless_it_preserves_unknown_fields(kind: str) -> None:
    untyped = [
        path
        for path, node in _nodes(_schema(kind))
        if "type" not in node and not node.get("x-kubernetes-preserve-unknown-fields")
    ]

    assert untyped == []


@pytest.mark.parametrize("kind", KINDS)
def test_no_null_default_is_kept(kind: str) -> None:
    assert [path for path, node in _nodes(_schema(kind)) if node.get("default", 0) is None] == []


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("part", ["spec", "status"])
def test_spec_and_status_do_not_preserve_unknown_fields_wholesale(kind: str, part: str) -> None:
    assert "x-kubernetes-preserve-unknown-fields" not in _schema(kind)["properties"][part]


@pytest.mark.parametrize("kind", KINDS)
def test_spec_is_required(kind: str) -> None:
    assert _schema(kind)["required"] == ["spec"]


def test_optional_fields_are_not_required() -> None:
    assert _spec("EGPSource")["required"] == ["credentialsSecretRef"]
    assert "required" not in _status("EGPModel")


def test_optional_field_has_the_type_of_its_value() -> None:
    assert _spec("EGPSource")["properties"]["accountID"]["type"] == "string"
    assert _status("EGPModel")["properties"]["createdBy"]["type"] == "object"


def test_field_descriptions_are_kept() -> None:
    assert "x-selected-account-id" in _spec("EGPSource")["properties"]["accountID"]["description"]


def test_a_referenced_models_docstring_describes_the_field_that_has_none() -> None:
    assert _status("EGPSource")["properties"]["models"]["description"] == (
        "How many mirrored models are in each phase."
    )


# ---- defaults and validation ---------------------------------------------------------------


def test_source_spec_defaults_are_the_models_defaults() -> None:
    defaults = {
        name: prop["default"]
        for name, prop in _spec("EGPSource")["properties"].items()
        if "default" in prop
    }

    assert defaults == {
        "baseURL": DEFAULT_BASE_URL,
        "refreshInterval": "60s",
        "pageSize": 500,
        "deletionPolicy": "Retain",
        "missingGracePeriod": "1h",
        "suspend": False,
    }


def test_credentials_secret_key_defaults_to_api_key() -> None:
    secret_ref = _spec("EGPSource")["properties"]["credentialsSecretRef"]

    assert secret_ref["properties"]["key"]["default"] == "apiKey"
    assert secret_ref["required"] == ["name"]


def test_page_size_bounds_come_from_the_model() -> None:
    page_size = _spec("EGPSource")["properties"]["pageSize"]

    assert (page_size["type"], page_size["minimum"], page_size["maximum"]) == ("integer", 1, 1000)


def test_literals_become_enums() -> None:
    assert _spec("EGPSource")["properties"]["deletionPolicy"]["enum"] == ["Retain", "Delete"]
    assert _status("EGPModel")["properties"]["phase"]["enum"] == list(PHASES)


@pytest.mark.parametrize("field", ["refreshInterval", "missingGracePeriod"])
def test_durations_are_bounded_strings_of_the_duration_pattern(field: str) -> None:
    duration = _spec("EGPSource")["properties"][field]

    assert duration["type"] == "string"
    assert duration["pattern"] == DURATION_PATTERN
    assert duration["minLength"] == 2
    assert duration["maxLength"] <= 64  # bounded, for the CEL cost estimator
    assert "duration(self)" in duration["x-kubernetes-validations"][0]["rule"]


@pytest.mark.parametrize("text", ["0s", "10s", "90s", "5m", "1h30m", "2h0m5s"])
def test_duration_pattern_admits_what_the_operator_parses(text: str) -> None:
    parse_duration(text)
    assert re.fullmatch(DURATION_PATTERN, text)


@pytest.mark.parametrize(
    ("field", "bound", "message"),
    [
        ("refreshInterval", '<= duration("86400s")', "must be at most 24h"),
        ("missingGracePeriod", '<= duration("31536000s")', "must be at most 8760h"),
    ],
)
def test_durations_have_an_upper_bound(field: str, bound: str, message: str) -> None:
    rules = _spec("EGPSource")["properties"][field]["x-kubernetes-validations"]

    assert any(rule["rule"].endswith(bound) and rule["message"] == message for rule in rules)


def test_refresh_interval_must_be_at_least_ten_seconds() -> None:
    rules = _spec("EGPSource")["properties"]["refreshInterval"]["x-kubernetes-validations"]

    assert any(
        rule["rule"].endswith('duration(self) >= duration("10s")')
        and rule["message"] == "must be at least 10s"
        for rule in rules
    )


@pytest.mark.parametrize("field", ["modelID", "sourceRef"])
def test_model_identity_is_immutable(field: str) -> None:
    rules = _spec("EGPModel")["properties"][field]["x-kubernetes-validations"]

    assert rules == [{"rule": "self == oldSelf", "message": f"{field} is immutable"}]


# ---- status --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_conditions_are_a_list_map_keyed_by_type(kind: str) -> None:
    conditions = _status(kind)["properties"]["conditions"]

    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert "type" in conditions["items"]["required"]


@pytest.mark.parametrize("field", ["vendorConfiguration", "modelMetadata"])
def test_free_form_fields_keep_any_json(field: str) -> None:
    node = _status("EGPModel")["properties"][field]

    assert node["x-kubernetes-preserve-unknown-fields"] is True
    assert node["nullable"] is True
    assert "type" not in node


def test_extra_fields_is_a_map_of_any_json() -> None:
    node = _status("EGPModel")["properties"]["extraFields"]

    assert node["type"] == "object"
    assert node["additionalProperties"] == {
        "nullable": True,
        "x-kubernetes-preserve-unknown-fields": True,
    }


# ---- printer columns -----------------------------------------------------------------------

READY = '.status.conditions[?(@.type=="Ready")].status'


def test_model_printer_columns() -> None:
    assert _columns("EGPModel") == [
        ("Model", "string", ".status.name", 0),
        ("Vendor", "string", ".status.vendor", 0),
        ("Type", "string", ".status.type", 0),
        ("Status", "string", ".status.status", 0),
        ("Ready", "string", READY, 0),
        ("Since", "date", ".status.phaseSince", 0),
        ("Age", "date", ".metadata.creationTimestamp", 0),
        ("Phase", "string", ".status.phase", 1),
        ("Flapping", "string", '.status.conditions[?(@.type=="Flapping")].status', 1),
        ("Model ID", "string", ".spec.modelID", 1),
    ]


def test_source_printer_columns() -> None:
    assert _columns("EGPSource") == [
        ("Account", "string", ".spec.accountID", 0),
        ("Ready", "string", READY, 0),
        ("Models", "integer", ".status.models.total", 0),
        ("Last Sync", "date", ".status.lastSyncTime", 0),
        ("Age", "date", ".metadata.creationTimestamp", 0),
        ("Synced", "string", '.status.conditions[?(@.type=="Synced")].status', 1),
        ("Message", "string", ".status.message", 1),
    ]


# ---- the conversion on its own -------------------------------------------------------------


class _Exclusive(BaseModel):
    count: int = Field(default=1, gt=0, lt=10)


class _Union(BaseModel):
    value: int | str


class _Tuple(BaseModel):
    pair: tuple[int, str]


class _Set(BaseModel):
    tags: set[str] = Field(default_factory=set)


def test_exclusive_bounds_become_openapi_v3_flags() -> None:
    count = openapi_schema(_Exclusive)["properties"]["count"]

    assert (count["minimum"], count["exclusiveMinimum"]) == (0, True)
    assert (count["maximum"], count["exclusiveMaximum"]) == (10, True)


def test_a_set_becomes_a_set_list() -> None:
    assert openapi_schema(_Set)["properties"]["tags"]["x-kubernetes-list-type"] == "set"


@pytest.mark.parametrize("model", [_Union, _Tuple], ids=["union", "tuple"])
def test_a_type_with_no_structural_schema_is_refused(model: type[BaseModel]) -> None:
    with pytest.raises(ValueError, match="structural"):
        openapi_schema(model)
