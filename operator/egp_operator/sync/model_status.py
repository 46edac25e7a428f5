"""What an EGPModel's status should say about one upstream model.

Pure functions over the bounded record a listing keeps (`upstream.py`): the phase table, and
conditions whose `lastTransitionTime` moves only when the condition's status does. Every part
of a status is bounded where the record is made (capped strings, free-form fields within
MAX_FREE_FORM_BYTES, the deep ones left out), so a status always fits MAX_STATUS_BYTES, and the
Truncated condition says what was left out. A model gone upstream keeps its last status; only
the fields that say it is missing are written over it. When the phase began and the last
transitions (`phaseSince`, `history`, the Flapping condition) come from phase_history.py.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from egp_operator.bounds import MAX_MESSAGE_LENGTH, MAX_QUOTED_LENGTH, cut
from egp_operator.sync.mirrored import StoredStatus
from egp_operator.sync.phase_history import flapping_condition, phase_time
from egp_operator.sync.upstream import UpstreamModel
from egp_operator.vocabulary import (
    READY,
    RECONCILING,
    STALLED,
    SYNCED,
    TRUNCATED,
    ModelPhase,
    Phase,
    Reason,
    condition,
)

#: One table from upstream status to phase; anything else is `Unknown`, never an error.
PHASE_BY_STATUS: Final[Mapping[str, Phase]] = {
    "ready": ModelPhase.READY,
    "deploying": ModelPhase.DEPLOYING,
    "failed": ModelPhase.FAILED,
    "deployment_timeout": ModelPhase.DEPLOYMENT_TIMEOUT,
}

#: What each phase means to kstatus: still moving (Reconciling), or needs a human (Stalled).
#: Unknown is a status this version does not know yet: not a failure, so still moving.
PROGRESS_BY_PHASE: Final[Mapping[Phase, str | None]] = {
    ModelPhase.READY: None,
    ModelPhase.DEPLOYING: RECONCILING,
    ModelPhase.UNKNOWN: RECONCILING,
    ModelPhase.FAILED: STALLED,
    ModelPhase.DEPLOYMENT_TIMEOUT: STALLED,
    ModelPhase.MISSING: STALLED,
}


def phase_of(upstream_status: str | None) -> Phase:
    return PHASE_BY_STATUS.get(upstream_status or "", ModelPhase.UNKNOWN)


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


_STATUS_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), check_circular=False)


@dataclass(frozen=True, slots=True)
class StatusRecipe:
    """What an observed status is built from. A plan holds this, not the status: a plan of
    20,000 creates then holds references, and each status exists only while it is written."""

    model: UpstreamModel
    previous: StoredStatus
    now: str
    generation: int = 1

    def build(self) -> dict[str, Any]:
        return observed_status(
            self.model, now=self.now, previous=self.previous, generation=self.generation
        )

    def encoded(self) -> str:
        """The status as compact JSON, as it is sent."""
        return _STATUS_ENCODER.encode(self.build())


def observed_status(
    model: UpstreamModel, *, now: str, previous: StoredStatus, generation: int = 1
) -> dict[str, Any]:
    """The full status for a model present in a complete listing."""
    phase = phase_of(model.status)
    created_by = {
        key: value
        for key, value in (
            ("userID", model.created_by_user_id),
            ("identityType", model.created_by_identity_type),
        )
        if value is not None
    }
    status: dict[str, Any] = {
        "phase": phase,
        "name": model.name,
        "vendor": model.vendor,
        "type": model.type,
        "status": model.status,
        "statusReason": model.status_reason,
        "availability": model.availability,
        "createdAt": model.created_at,
        "createdBy": created_by or None,
        **model.free_form_fields(),
    }
    status = {key: value for key, value in status.items() if value is not None}
    previous_conditions = previous.conditions
    ready_message = _ready_message(model, phase)
    when = phase_time(
        previous, phase, now=now, why=model.status_reason, created_at=model.created_at
    )
    status["phaseSince"] = when.since
    status["history"] = when.history
    status["observedGeneration"] = generation
    status["conditions"] = [
        condition(
            READY,
            phase == ModelPhase.READY,
            phase,
            ready_message,
            now=now,
            previous=previous_conditions,
        ),
        condition(
            SYNCED,
            True,
            Reason.SYNCED,
            "Seen in the last complete listing",
            now=now,
            previous=previous_conditions,
        ),
        *progress_conditions(
            PROGRESS_BY_PHASE[phase], phase, ready_message, now=now, previous=previous_conditions
        ),
    ]
    if model.left_out:
        status["truncatedFields"] = [name for name, _ in model.left_out]
        whys = sorted({why for _, why in model.left_out})
        message = f"Left out {', '.join(status['truncatedFields'])}: {' and '.join(whys)}"
        status["conditions"].append(
            condition(
                TRUNCATED,
                True,
                Reason.STATUS_TOO_LARGE,
                message,
                now=now,
                previous=previous_conditions,
            )
        )
    flapping = flapping_condition(when.history, now=now, previous=previous_conditions)
    if flapping is not None:
        status["conditions"].append(flapping)
    return status


def missing_status(previous: StoredStatus, *, now: str, generation: int = 1) -> dict[str, Any]:
    """What changes in the status of a model gone upstream: its phase, `missingSince` and
    conditions, merged over the last known status, which is kept for the user."""
    message = "The model is no longer listed by EGP"
    conditions = previous.conditions
    when = phase_time(previous, ModelPhase.MISSING, now=now, why=message)
    flapping = flapping_condition(when.history, now=now, previous=conditions)
    return {
        "phase": ModelPhase.MISSING,
        "missingSince": previous.missing_since or now,
        "phaseSince": when.since,
        "history": when.history,
        "observedGeneration": generation,
        "conditions": [
            condition(READY, False, ModelPhase.MISSING, message, now=now, previous=conditions),
            condition(SYNCED, False, ModelPhase.MISSING, message, now=now, previous=conditions),
            *progress_conditions(
                PROGRESS_BY_PHASE[ModelPhase.MISSING],
                ModelPhase.MISSING,
                message,
                now=now,
                previous=conditions,
            ),
            *[dict(c) for c in conditions if c.get("type") == TRUNCATED],
            *([flapping] if flapping is not None else []),
        ],
    }


def is_missing_as(previous: StoredStatus, changes: Mapping[str, Any]) -> bool:
    """Whether the stored status already says what `missing_status` gave."""
    same: bool = (
        previous.phase == changes["phase"]
        and previous.missing_since == changes["missingSince"]
        and previous.phase_since == changes["phaseSince"]
        and [dict(e) for e in previous.history] == changes["history"]
        and previous.observed_generation == changes["observedGeneration"]
        and [dict(c) for c in previous.conditions] == changes["conditions"]
    )
    return same


def _ready_message(model: UpstreamModel, phase: Phase) -> str:
    if model.status_reason:
        return cut(model.status_reason, MAX_MESSAGE_LENGTH)
    upstream = cut(repr(model.status), MAX_QUOTED_LENGTH) if model.status else "none"
    if phase == ModelPhase.UNKNOWN:
        return f"EGP reports status {upstream}, which this operator does not know"
    return f"EGP reports status {upstream}"
