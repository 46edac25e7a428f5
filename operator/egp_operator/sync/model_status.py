"""What an EGPModel's status should say about one upstream model.

Pure functions: the phase table, conditions with a `lastTransitionTime` that moves only when the
condition's status does, env_vars masking, and the bounds on what upstream writes into an
object: every upstream string is capped (`bounds.py`), a free-form field nested deeper than
MAX_JSON_DEPTH is left out, and a status still over MAX_STATUS_BYTES loses its big free-form
fields, biggest role first, so one hostile record can never stop the loop or be dropped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from egp_operator.bounds import (
    MAX_JSON_DEPTH,
    MAX_MESSAGE_LENGTH,
    MAX_QUOTED_LENGTH,
    MAX_STATUS_BYTES,
    MAX_TEXT_LENGTH,
    MAX_WORD_LENGTH,
    cut,
    json_depth,
    make_storable,
)
from egp_operator.egp.models import InferenceModel
from egp_operator.resources.models import Phase
from egp_operator.vocabulary import (
    READY,
    RECONCILING,
    STALLED,
    SYNCED,
    TRUNCATED,
    Reason,
    condition,
)

#: One table from upstream status to phase; anything else is `Unknown`, never an error.
PHASE_BY_STATUS: Final[Mapping[str, Phase]] = {
    "ready": "Ready",
    "deploying": "Deploying",
    "failed": "Failed",
    "deployment_timeout": "DeploymentTimeout",
}
MASK: Final = "***"
#: Dropped in this order until the status fits; the identity and phase are always kept.
_TRUNCATABLE: Final = ("vendorConfiguration", "extraFields", "modelMetadata")
_KNOWN_UPSTREAM_FIELDS: Final = frozenset({"object"})

#: What each phase means to kstatus: still moving (Reconciling), or needs a human (Stalled).
#: Unknown is a status this version does not know yet: not a failure, so still moving.
PROGRESS_BY_PHASE: Final[Mapping[Phase, str | None]] = {
    "Ready": None,
    "Deploying": RECONCILING,
    "Unknown": RECONCILING,
    "Failed": STALLED,
    "DeploymentTimeout": STALLED,
    "Missing": STALLED,
}


def phase_of(upstream_status: str | None) -> Phase:
    return PHASE_BY_STATUS.get(upstream_status or "", "Unknown")


def mask_env_vars(vendor_configuration: Any) -> Any:
    """Keep env_vars keys, hide their values: readers of EGPModels must not learn credentials."""
    if not isinstance(vendor_configuration, dict):
        return vendor_configuration
    image = vendor_configuration.get("model_image")
    if not isinstance(image, dict) or "env_vars" not in image:
        return vendor_configuration
    env_vars = image["env_vars"]
    masked = {key: MASK for key in env_vars} if isinstance(env_vars, dict) else MASK
    return {**vendor_configuration, "model_image": {**image, "env_vars": masked}}


def _text(value: str | None) -> str | None:
    if value is None or len(value) <= MAX_TEXT_LENGTH:  # inline: runs for every model
        return value
    return cut(value, MAX_TEXT_LENGTH)


def _word(value: str | None) -> str | None:
    if value is None or len(value) <= MAX_WORD_LENGTH:
        return value
    return cut(value, MAX_WORD_LENGTH)


def progress_conditions(
    progress: str | None,
    reason: str,
    message: str,
    *,
    now: str,
    previous: Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """Reconciling and Stalled, the one named by `progress` True with the message, the
    other False; both with the same reason, as Ready has."""
    return [
        condition(
            kind,
            progress == kind,
            reason,
            message if progress == kind else "",
            now=now,
            previous=previous,
        )
        for kind in (RECONCILING, STALLED)
    ]


def observed_status(
    model: InferenceModel, *, now: str, previous: Mapping[str, Any], generation: int = 1
) -> dict[str, Any]:
    """The full status for a model present in a complete listing."""
    phase = phase_of(model.status)
    extra = {k: v for k, v in model.extra_fields.items() if k not in _KNOWN_UPSTREAM_FIELDS}
    created_by = {
        key: value
        for key, value in (
            ("userID", _word(model.created_by_user_id)),
            ("identityType", _word(model.created_by_identity_type)),
        )
        if value is not None
    }
    status: dict[str, Any] = {
        "phase": phase,
        "name": _text(model.name),
        "vendor": _word(model.model_vendor),
        "type": _word(model.model_type),
        "status": _word(model.status),
        "statusReason": _text(model.status_reason),
        "availability": _word(model.model_availability),
        "createdAt": _word(model.created_at),
        "createdBy": created_by or None,
        "vendorConfiguration": mask_env_vars(model.vendor_configuration),
        "modelMetadata": model.model_metadata,
        "extraFields": extra or None,
    }
    status = {key: value for key, value in status.items() if value is not None}
    previous_conditions = previous.get("conditions") or []
    ready_message = _ready_message(model, phase)
    status["observedGeneration"] = generation
    status["conditions"] = [
        condition(
            READY,
            phase == "Ready",
            phase,
            ready_message,
            now=now,
            previous=previous_conditions,
        ),
        condition(
            SYNCED,
            True,
            "Synced",
            "Seen in the last complete listing",
            now=now,
            previous=previous_conditions,
        ),
        *progress_conditions(
            PROGRESS_BY_PHASE[phase], phase, ready_message, now=now, previous=previous_conditions
        ),
    ]
    if _unchanged(status, previous):
        return status  # as stored, and what is stored was bounded: skip checking it again
    too_deep = [
        key for key in _TRUNCATABLE if key in status and json_depth(status[key]) > MAX_JSON_DEPTH
    ]
    return cap_size(status, now=now, previous=previous_conditions, too_deep=too_deep)


def _unchanged(status: Mapping[str, Any], previous: Mapping[str, Any]) -> bool:
    """Equal to the stored status: the common case, at C speed. What the operator stored is
    never deeper than MAX_JSON_DEPTH; a deeper one written by someone else can only make the
    comparison recurse too far, which then counts as a change, to be bounded below."""
    try:
        return status == previous
    except RecursionError:
        return False


def missing_status(previous: Mapping[str, Any], *, now: str, generation: int = 1) -> dict[str, Any]:
    """The last known status, marked `Missing`: what the model was is kept for the user."""
    status = {k: v for k, v in previous.items() if k not in ("conditions", "phase")}
    status["phase"] = "Missing"
    status["missingSince"] = previous.get("missingSince") or now
    previous_conditions = previous.get("conditions") or []
    message = "The model is no longer listed by EGP"
    status["observedGeneration"] = generation
    status["conditions"] = [
        condition(READY, False, "Missing", message, now=now, previous=previous_conditions),
        condition(SYNCED, False, "Missing", message, now=now, previous=previous_conditions),
        *progress_conditions(
            PROGRESS_BY_PHASE["Missing"], "Missing", message, now=now, previous=previous_conditions
        ),
        *[c for c in previous_conditions if c.get("type") == TRUNCATED],
    ]
    return status


def cap_size(
    status: dict[str, Any],
    *,
    now: str,
    previous: Sequence[Mapping[str, Any]],
    too_deep: Sequence[str] = (),
) -> dict[str, Any]:
    """Drop the free-form fields nested too deeply, then the big ones, biggest role first,
    until the status fits; say so. What is left is capped strings, so it always fits."""
    for field in too_deep:
        del status[field]
    if not _utf8_encodable(status):
        make_storable(status)
    dropped: list[str] = list(too_deep)
    for field in _TRUNCATABLE:
        if _size(status) <= MAX_STATUS_BYTES:
            break
        if field in status:
            del status[field]
            dropped.append(field)
    if dropped:
        status["truncatedFields"] = dropped
        why = [f"nested deeper than {MAX_JSON_DEPTH} levels"] if too_deep else []
        if len(dropped) > len(too_deep):
            why.append(f"the status would exceed {MAX_STATUS_BYTES // 1024} KiB")
        message = f"Left out {', '.join(dropped)}: {' and '.join(why)}"
        status["conditions"].append(
            condition(TRUNCATED, True, Reason.STATUS_TOO_LARGE, message, now=now, previous=previous)
        )
    return status


def _size(document: Any) -> int:
    """Bytes as the Kubernetes client sends them (ASCII, escaped)."""
    return len(json.dumps(document, separators=(",", ":")))


def _utf8_encodable(document: Any) -> bool:
    """False when a lone surrogate hides in it (escaped, ASCII JSON would not show it)."""
    try:
        json.dumps(document, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return False
    return True


def _ready_message(model: InferenceModel, phase: Phase) -> str:
    if model.status_reason:
        return cut(model.status_reason, MAX_MESSAGE_LENGTH)
    upstream = cut(repr(model.status), MAX_QUOTED_LENGTH) if model.status else "none"
    if phase == "Unknown":
        return f"EGP reports status {upstream}, which this operator does not know"
    return f"EGP reports status {upstream}"
