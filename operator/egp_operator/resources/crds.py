"""The CustomResourceDefinitions of EGPSource and EGPModel, generated from the pydantic models.

The models in `resources/models.py` are the single source of truth: the API server must
validate and default exactly what the operator reads and writes, so the CRD schemas are
derived from their JSON schema here, never written by hand. `crds/` holds the rendered YAML
(regenerate it with `make crds`); a unit test fails when it drifts from this code.

What pydantic cannot say is added here, and only here: the Kubernetes shape of a duration
(recognised by the `Duration` type's validator), `conditions` as a list keyed by `type`,
CEL rules (immutable identity, the bounds of the durations), printer columns and names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Final, get_args

import yaml
from pydantic import AfterValidator, BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from egp_operator.resources.models import (
    GROUP,
    MAX_MISSING_GRACE_PERIOD,
    MAX_REFRESH_INTERVAL,
    MIN_REFRESH_INTERVAL,
    MODEL_KIND,
    MODEL_PLURAL,
    SOURCE_KIND,
    SOURCE_PLURAL,
    VERSION,
    Duration,
    EGPModelSpec,
    EGPModelStatus,
    EGPSourceSpec,
    EGPSourceStatus,
)
from egp_operator.vocabulary import FLAPPING, READY, SYNCED

__all__ = [
    "DURATION_PATTERN",
    "build_crds",
    "crd_file_name",
    "openapi_schema",
    "render_crd_files",
    "render_crds_yaml",
    "write_crds",
]

# What both `parse_duration` and CEL's duration() read: ASCII digits only, as Python's `\d`
# (in models.py) would also admit other scripts' digits, which CEL cannot parse.
DURATION_PATTERN: Final = r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?$"
# "0s" is the shortest duration; 32 characters is far beyond the longest one Go can hold
# (about 2562047h), and a bound keeps the CEL cost estimator accepting duration() rules.
_DURATION_MIN_LENGTH: Final = 2
_DURATION_MAX_LENGTH: Final = 32
_DURATION_VALIDATORS: Final = tuple(
    meta.func for meta in get_args(Duration)[1:] if isinstance(meta, AfterValidator)
)


def _condition_status(type_: str) -> str:
    """The JSONPath of a condition's status, for a printer column named after it."""
    return f'.status.conditions[?(@.type=="{type_}")].status'


_HEADER: Final = (
    "# Generated from operator/egp_operator/resources/models.py by `make crds`: do not edit.\n"
)

# JSON-schema keywords that mean the same in a Kubernetes structural schema.
_KEPT_KEYWORDS: Final = frozenset(
    {
        "description",
        "enum",
        "format",
        "maxItems",
        "maxLength",
        "maxProperties",
        "maximum",
        "minItems",
        "minLength",
        "minProperties",
        "minimum",
        "multipleOf",
        "nullable",
        "pattern",
        "required",
        "type",
    }
)
# Keywords handled on their own below.
_STRUCTURE_KEYWORDS: Final = frozenset(
    {"properties", "additionalProperties", "items", "uniqueItems"}
)
# Keywords that only document or only matter to pydantic.
_DROPPED_KEYWORDS: Final = frozenset(
    {"$comment", "$schema", "deprecated", "examples", "readOnly", "title", "writeOnly"}
)


class _KubernetesJsonSchema(GenerateJsonSchema):
    """Pydantic's JSON schema, plus the one constraint that lives in a validator function:
    a `Duration` becomes a string the API server can check (pattern and CEL)."""

    def function_after_schema(
        self, schema: core_schema.AfterValidatorFunctionSchema
    ) -> JsonSchemaValue:
        json_schema = super().function_after_schema(schema)
        validator = schema["function"]["function"]
        if any(validator is known for known in _DURATION_VALIDATORS):
            json_schema = {**json_schema, **_duration_schema()}
        return json_schema


def _duration_schema() -> dict[str, Any]:
    return {
        "type": "string",
        "pattern": DURATION_PATTERN,
        "minLength": _DURATION_MIN_LENGTH,
        "maxLength": _DURATION_MAX_LENGTH,
        # The pattern admits values too big for a Go duration; this rejects them.
        "x-kubernetes-validations": [
            _duration_rule(timedelta(0), "must be a duration such as 30s, 5m or 1h30m")
        ],
    }


def _duration_rule(bound: timedelta, message: str, *, at_most: bool = False) -> dict[str, str]:
    """A CEL rule on a duration string: at least (or `at_most`) `bound`. It skips what the
    pattern and minLength already reject: CEL rules run even when the schema fails, and would
    add a type-conversion error."""
    seconds = f"{int(bound.total_seconds())}s"
    well_formed = f'self != "" && self.matches("{DURATION_PATTERN}")'
    compare = "<=" if at_most else ">="
    return {
        "rule": f'!({well_formed}) || duration(self) {compare} duration("{seconds}")',
        "message": message,
    }


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of ``model``, by its aliases (the Kubernetes names).

    Raises ``ValueError`` for what a structural schema cannot express (a union of two
    types, a tuple): a model change must never produce a silently wrong CRD.
    """
    raw = model.model_json_schema(by_alias=True, schema_generator=_KubernetesJsonSchema)
    defs: dict[str, Any] = raw.pop("$defs", {})
    schema: dict[str, Any] = _canonical(_structural(raw, defs, model.__name__))
    return schema


def _structural(node: Mapping[str, Any], defs: Mapping[str, Any], path: str) -> dict[str, Any]:
    """One JSON-schema node as a structural-schema node: references inlined, `Optional[X]`
    read as X (optional by not being required), anything-goes as preserve-unknown-fields."""
    node = _resolve(node, defs, path)
    if "const" in node:
        node = {**{k: v for k, v in node.items() if k != "const"}, "enum": [node["const"]]}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _KEPT_KEYWORDS or key.startswith("x-kubernetes-"):
            out[key] = value
        elif key == "default":
            if value is not None:  # None is pydantic's "absent", not a value to store
                out[key] = value
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            # JSON Schema 2020-12 carries the bound; OpenAPI v3.0 flags minimum/maximum.
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key not in _DROPPED_KEYWORDS | _STRUCTURE_KEYWORDS:
            raise ValueError(f"{path}: no structural equivalent for {key!r}: {value!r}")
    if isinstance(out.get("type"), list):
        raise ValueError(f"{path}: a value of several types ({out['type']}) is not structural")
    if "type" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        if set(out) - {"description", "default"}:
            raise ValueError(f"{path}: constraints without a type: {sorted(out)}")
        # Any JSON value (pydantic's JsonValue, Any), null included: kept as sent, unchecked.
        # Without `nullable` the API server would drop a null map value (extraFields), and
        # what the operator wrote would never read back equal.
        out["x-kubernetes-preserve-unknown-fields"] = True
        out["nullable"] = True
    if "properties" in node:
        out["properties"] = {
            name: _structural(prop, defs, f"{path}.{name}")
            for name, prop in node["properties"].items()
        }
    if not out.get("required", True):
        del out["required"]
    _convert_additional_properties(node, out, defs, path)
    if "items" in node:
        out["items"] = _structural(node["items"], defs, f"{path}[]")
        _set_list_type(out, unique=bool(node.get("uniqueItems")), path=path)
    return out


def _canonical(value: Any, *, names: bool = False) -> Any:
    """Keys sorted (as controller-gen does), except property names, which keep the order
    the model declares: the YAML then changes only when the models do."""
    if isinstance(value, list):
        return [_canonical(item) for item in value]
    if not isinstance(value, dict):
        return value
    items = value.items() if names else sorted(value.items())
    return {key: _canonical(item, names=key == "properties" and not names) for key, item in items}


def _resolve(node: Mapping[str, Any], defs: Mapping[str, Any], path: str) -> Mapping[str, Any]:
    """Inline `$ref`s and reduce `anyOf [X, null]` to X; keywords beside them (a field's
    description or default) win over the referenced model's."""
    while True:
        if "$ref" in node:
            target = defs[node["$ref"].removeprefix("#/$defs/")]
            node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
            continue
        union = next((k for k in ("anyOf", "oneOf", "allOf") if k in node), None)
        if union is None:
            return node
        choices = [choice for choice in node[union] if choice != {"type": "null"}]
        if len(choices) != 1:
            raise ValueError(f"{path}: a union of {len(choices)} types has no structural schema")
        node = {**choices[0], **{k: v for k, v in node.items() if k != union}}


def _convert_additional_properties(
    node: Mapping[str, Any], out: dict[str, Any], defs: Mapping[str, Any], path: str
) -> None:
    extra = node.get("additionalProperties")
    if extra is None or extra is False:
        return  # closed object: the API server prunes unknown fields
    if extra is True:  # extra="allow", dict[str, Any]
        out["x-kubernetes-preserve-unknown-fields"] = True
        return
    if "properties" in out:
        raise ValueError(f"{path}: both properties and additionalProperties is not structural")
    out["additionalProperties"] = _structural(extra, defs, f"{path}.*")


def _set_list_type(out: dict[str, Any], *, unique: bool, path: str) -> None:
    if path.endswith(".conditions"):
        # Standard conditions: one entry per type, merged by type under server-side apply.
        out["x-kubernetes-list-type"] = "map"
        out["x-kubernetes-list-map-keys"] = ["type"]
    elif unique:
        if out["items"].get("type") not in ("string", "integer", "number", "boolean"):
            raise ValueError(f"{path}: unique items must be scalars in Kubernetes")
        out["x-kubernetes-list-type"] = "set"


@dataclass(frozen=True)
class _Column:
    name: str
    type: str
    json_path: str
    description: str
    priority: int = 0

    def to_k8s(self) -> dict[str, Any]:
        column: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "jsonPath": self.json_path,
            "description": self.description,
        }
        if self.priority:
            column["priority"] = self.priority
        return column


@dataclass(frozen=True)
class _Kind:
    kind: str
    plural: str
    short_name: str
    description: str
    spec: type[BaseModel]
    status: type[BaseModel]
    columns: tuple[_Column, ...]
    # CEL rules pydantic cannot express, by spec field (its Kubernetes name).
    spec_rules: Mapping[str, list[dict[str, str]]] = field(default_factory=dict)
    # Fields `kubectl get --field-selector` may filter on (selectableFields, GA in 1.32, the
    # oldest Kubernetes supported: docs/compatibility.md).
    selectable: tuple[str, ...] = ()


_AGE = _Column("Age", "date", ".metadata.creationTimestamp", "Time since the object was created.")


def _immutable(name: str) -> list[dict[str, str]]:
    return [{"rule": "self == oldSelf", "message": f"{name} is immutable"}]


_SOURCE = _Kind(
    kind=SOURCE_KIND,
    plural=SOURCE_PLURAL,
    short_name="egps",
    description="A connection to one Scale EGP account, whose models are mirrored as EGPModels.",
    spec=EGPSourceSpec,
    status=EGPSourceStatus,
    columns=(
        _Column("Account", "string", ".spec.accountID", "The EGP account."),
        _Column(READY, "string", _condition_status(READY), "Whether the account answers."),
        _Column("Models", "integer", ".status.models.total", "How many models are mirrored."),
        _Column("Last Sync", "date", ".status.lastSyncTime", "When the last sync cycle ended."),
        _AGE,
        _Column(
            SYNCED, "string", _condition_status(SYNCED), "Whether the last sync cycle completed.", 1
        ),
        _Column("Message", "string", ".status.message", "Why the last sync cycle failed.", 1),
    ),
    spec_rules={
        "refreshInterval": [
            _duration_rule(
                MIN_REFRESH_INTERVAL,
                f"must be at least {int(MIN_REFRESH_INTERVAL.total_seconds())}s",
            ),
            _duration_rule(
                MAX_REFRESH_INTERVAL,
                f"must be at most {int(MAX_REFRESH_INTERVAL.total_seconds()) // 3600}h",
                at_most=True,
            ),
        ],
        "missingGracePeriod": [
            _duration_rule(
                MAX_MISSING_GRACE_PERIOD,
                f"must be at most {int(MAX_MISSING_GRACE_PERIOD.total_seconds()) // 3600}h",
                at_most=True,
            )
        ],
    },
)

_MODEL = _Kind(
    kind=MODEL_KIND,
    plural=MODEL_PLURAL,
    short_name="egpm",
    description="One model of a Scale EGP account, as last seen by its EGPSource.",
    spec=EGPModelSpec,
    status=EGPModelStatus,
    columns=(
        _Column("Model", "string", ".status.name", "The model's name in EGP."),
        _Column("Vendor", "string", ".status.vendor", "The model's vendor."),
        _Column("Type", "string", ".status.type", "The model's type."),
        _Column("Status", "string", ".status.status", "The model's status in EGP."),
        _Column(READY, "string", _condition_status(READY), "Whether the model is ready."),
        _Column("Since", "date", ".status.phaseSince", "How long it has been in its phase."),
        _AGE,
        _Column("Phase", "string", ".status.phase", "The model's phase.", 1),
        _Column(
            FLAPPING,
            "string",
            _condition_status(FLAPPING),
            "True while the model changes phase too often.",
            1,
        ),
        _Column("Model ID", "string", ".spec.modelID", "The model's id in EGP.", 1),
    ),
    spec_rules={"sourceRef": _immutable("sourceRef"), "modelID": _immutable("modelID")},
    # The labels stay: `kubectl get -l`, kube-state-metrics and most clients select by label. A
    # field selector adds `--field-selector`, and an exact model id of any length (a label
    # value holds at most 63 characters).
    selectable=(".status.phase", ".spec.sourceRef.name", ".spec.modelID"),
)

_KINDS: Final = (_SOURCE, _MODEL)


#: What the API server shows as the status of an object the operator has not written yet. An
#: object with no status at all reads as Current to kstatus (Flux's `wait`, kpt, the cli-utils
#: applier), so a freshly applied source would pass a health check before anything checked
#: it; generation 1 against observedGeneration 0 reads as InProgress. The API server applies
#: the default when it reads the object, and the operator's first status write replaces it.
UNOBSERVED_STATUS: Final = {"observedGeneration": 0}


def _root_schema(kind: _Kind) -> dict[str, Any]:
    spec = openapi_schema(kind.spec)
    for name, rules in kind.spec_rules.items():
        prop = spec["properties"][name]  # a KeyError here: a renamed field left a stale rule
        prop["x-kubernetes-validations"] = [*prop.get("x-kubernetes-validations", []), *rules]
    schema: dict[str, Any] = {
        "type": "object",
        "description": kind.description,
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": "The versioned schema of this representation of an object.",
            },
            "kind": {"type": "string", "description": "The REST resource this object represents."},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": {**openapi_schema(kind.status), "default": UNOBSERVED_STATUS},
        },
    }
    if spec.get("required"):
        schema["required"] = ["spec"]
    return schema


def _version(kind: _Kind) -> dict[str, Any]:
    version: dict[str, Any] = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": _canonical(_root_schema(kind))},
        "subresources": {"status": {}},
        "additionalPrinterColumns": [column.to_k8s() for column in kind.columns],
    }
    if kind.selectable:
        version["selectableFields"] = [{"jsonPath": path} for path in kind.selectable]
    return version


def _crd(kind: _Kind) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{kind.plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.kind.lower(),
                "shortNames": [kind.short_name],
                "categories": ["egp"],
            },
            "scope": "Namespaced",
            "versions": [_version(kind)],
        },
    }


def build_crds() -> list[dict[str, Any]]:
    """The `apiextensions.k8s.io/v1` CRDs of EGPSource and EGPModel, in that order."""
    return [_crd(kind) for kind in _KINDS]


def crd_file_name(crd: Mapping[str, Any]) -> str:
    """`<group>_<plural>.yaml` (as controller-gen names them): `egp-operator.io_egpmodels.yaml`."""
    return f"{crd['spec']['group']}_{crd['spec']['names']['plural']}.yaml"


def _dump(document: Mapping[str, Any]) -> str:
    # Insertion order: the envelope as kubectl shows it, the schema canonical.
    return yaml.safe_dump(dict(document), sort_keys=False, width=100, allow_unicode=True)


def render_crd_files() -> dict[str, str]:
    """Each CRD's file name and YAML text, as committed under `crds/`."""
    return {crd_file_name(crd): _HEADER + _dump(crd) for crd in build_crds()}


def render_crds_yaml() -> str:
    """Both CRDs as one multi-document YAML stream, for `kubectl apply -f -`."""
    return "".join(f"---\n{text}" for text in render_crd_files().values())


def write_crds(directory: Path) -> list[Path]:
    """Write one file per CRD into ``directory`` (created if missing); return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_crd_files().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
