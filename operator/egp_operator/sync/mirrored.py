"""What the operator holds of each EGPModel between cycles: its identity, its labels, the few
status fields a plan reads, and a digest of the rest.

The kopf index keeps one of these per EGPModel, for as long as the object exists. The status
itself stays in etcd: its free-form fields are what a hostile endpoint can make large (a few
KiB of JSON become tens of KiB once decoded), so the index keeps only what the planner reads
(phase, vendor, type, missingSince, conditions) and a digest that is equal for equal statuses;
a plan compares the status it builds with the stored one by digest.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from egp_operator.kube import KubeAPI, custom_path
from egp_operator.resources.models import GROUP, MODEL_PLURAL, SOURCE_KIND, VERSION
from egp_operator.sync.naming import SOURCE_LABEL, label_value

#: Strings up to this long are shared between the objects of the index.
_SHARED_STRING_LENGTH: Final = 64


#: Keys sorted: the API server writes a status back with its keys in another order.
_CANONICAL: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"), check_circular=False)


def status_digest(status: Mapping[str, Any]) -> int | None:
    """Equal for statuses the API server would store alike, at C speed: keys in any order (a
    status is built with whole floats already written as integers, as the API server writes
    them back: `upstream.UpstreamModel.free_form_fields`). None for one that cannot be encoded
    (nested too deeply), which then equals nothing."""
    try:
        return hash(_CANONICAL.encode(status))
    except (RecursionError, ValueError, TypeError):
        return None


@dataclass(frozen=True, slots=True)
class StoredStatus:
    """An EGPModel's status as the planner needs it: the fields it reads, and a digest of
    the whole. `digest` None: unknown (none stored yet, or too deep): equal to nothing."""

    phase: str | None = None
    vendor: str | None = None
    type: str | None = None
    missing_since: str | None = None
    phase_since: str | None = None
    observed_generation: int | None = None
    conditions: tuple[Mapping[str, Any], ...] = ()
    #: The last phase transitions (`status.history`), oldest first.
    history: tuple[Mapping[str, Any], ...] = ()
    truncated_fields: tuple[str, ...] = ()
    digest: int | None = field(default=None, compare=False)

    @classmethod
    def of(cls, status: Mapping[str, Any]) -> StoredStatus:
        """`status` as a watch event or a LIST delivered it (or as a plan wrote it)."""
        if not status:
            return EMPTY_STATUS
        conditions = status.get("conditions")
        history = status.get("history")
        truncated = status.get("truncatedFields")
        return cls(
            phase=_text_or_none(status.get("phase")),
            vendor=_text_or_none(status.get("vendor")),
            type=_text_or_none(status.get("type")),
            missing_since=_text_or_none(status.get("missingSince")),
            phase_since=_text_or_none(status.get("phaseSince")),
            observed_generation=_int_or_none(status.get("observedGeneration")),
            conditions=tuple(shared_strings(c) for c in conditions or () if isinstance(c, dict))
            if isinstance(conditions, list)
            else (),
            history=tuple(shared_strings(e) for e in history if isinstance(e, dict))
            if isinstance(history, list)
            else (),
            truncated_fields=tuple(str(f) for f in truncated)
            if isinstance(truncated, list)
            else (),
            digest=status_digest(status),
        )


EMPTY_STATUS: Final = StoredStatus()


@dataclass(frozen=True, slots=True)
class MirroredModel:
    """An existing EGPModel as the index holds it."""

    name: str
    model_id: str
    labels: Mapping[str, str]
    status: StoredStatus = EMPTY_STATUS
    creation_timestamp: str = ""
    uid: str = ""
    #: metadata.generation: 1 for a new object, and it stays 1 (the spec is immutable).
    generation: int = 1
    #: The uid its controller ownerReference names ("" for none): only a source's own
    #: objects are written or deleted by its cycles.
    controller_uid: str = ""


def mirrored_from_object(obj: Mapping[str, Any]) -> MirroredModel:
    """An EGPModel as the planner sees it (from the index or a LIST), its strings shared."""
    meta = obj.get("metadata") or {}
    return MirroredModel(
        name=str(meta.get("name", "")),
        model_id=str((obj.get("spec") or {}).get("modelID", "")),
        labels=shared_strings(dict(meta.get("labels") or {})),
        status=StoredStatus.of(obj.get("status") or {}),
        creation_timestamp=str(meta.get("creationTimestamp", "")),
        uid=str(meta.get("uid", "")),
        generation=int(meta.get("generation") or 1),
        controller_uid=_controller_uid(meta),
    )


async def list_mirrored(kube: KubeAPI, namespace: str, source: str) -> list[MirroredModel]:
    """The source's EGPModels by LIST, for one-off cycles that have no kopf index."""
    path = custom_path(GROUP, VERSION, namespace, MODEL_PLURAL)
    answer = await kube.get(path, params={"labelSelector": f"{SOURCE_LABEL}={label_value(source)}"})
    items = answer.get("items", []) if isinstance(answer, dict) else []
    return [
        mirrored_from_object(item)
        for item in items
        if item.get("spec", {}).get("sourceRef", {}).get("name") == source
    ]


def _controller_uid(meta: Mapping[str, Any]) -> str:
    """The uid of the EGPSource that controls the object, "" when none does."""
    for owner in meta.get("ownerReferences") or ():
        if isinstance(owner, dict) and owner.get("controller") and owner.get("kind") == SOURCE_KIND:
            return str(owner.get("uid") or "")
    return ""


def shared_strings(value: Any) -> Any:
    """`value` with its keys and short strings interned. Each watch event is decoded on its
    own, so every EGPModel in the index held its own copy of every key, condition type,
    reason, message and timestamp (bench/FINDINGS.md section 9). A document nested too deeply
    to walk is kept as it is."""
    try:
        return _shared(value)
    except RecursionError:
        return value


def _shared(value: Any) -> Any:
    if isinstance(value, str):
        return sys.intern(value) if len(value) <= _SHARED_STRING_LENGTH else value
    if isinstance(value, dict):
        return {sys.intern(key): _shared(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shared(item) for item in value]
    return value


def _text_or_none(value: Any) -> str | None:
    return (
        sys.intern(value)
        if isinstance(value, str) and len(value) <= 64
        else (value if isinstance(value, str) else None)
    )


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
