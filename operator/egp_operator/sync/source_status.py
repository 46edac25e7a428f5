"""What an EGPSource's status should say after a cycle; pure, so its rules are unit-tested.

`Ready` says whether the account answers, `Synced` whether the last cycle completed. The status
is written only when it changes, or when `lastSyncTime` is older than the heartbeat, so a
steady state costs no writes while staleness stays visible.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from egp_operator.bounds import MAX_MESSAGE_LENGTH, cut, storable_text
from egp_operator.sync.model_status import progress_conditions
from egp_operator.vocabulary import (
    READY,
    RECONCILING,
    STALLED,
    STALLED_REASONS,
    SYNCED,
    ModelPhase,
    Phase,
    Reason,
    condition,
    parse_timestamp,
    timestamp,
)

_TIMES = ("lastSyncTime", "lastSuccessfulSyncTime")


@dataclass(frozen=True, kw_only=True)
class CycleOutcome:
    """How a cycle ended: `synced`, `failed` or `suspended`. `account_answered` is False when
    EGP could not be asked or refused (credentials, network, auth); `phase_counts` are the
    models of the listing, when a complete one was read."""

    ok: bool
    reason: Reason
    message: str
    account_answered: bool
    phase_counts: Mapping[Phase, int] | None = None

    @classmethod
    def synced(cls, message: str, phase_counts: Mapping[Phase, int]) -> CycleOutcome:
        return cls(
            ok=True,
            reason=Reason.SYNCED,
            message=message,
            account_answered=True,
            phase_counts=phase_counts,
        )

    @classmethod
    def failed(
        cls,
        reason: Reason,
        message: str,
        *,
        account_answered: bool = False,
        phase_counts: Mapping[Phase, int] | None = None,
    ) -> CycleOutcome:
        return cls(
            ok=False,
            reason=reason,
            message=message,
            account_answered=account_answered,
            phase_counts=phase_counts,
        )

    @classmethod
    def suspended(cls, *, account_answered: bool) -> CycleOutcome:
        """EGP is not called; Ready keeps what the last cycle found."""
        return cls(
            ok=False,
            reason=Reason.SUSPENDED,
            message="spec.suspend is true: EGP is not called and nothing is mirrored",
            account_answered=account_answered,
        )


def source_status(
    previous: Mapping[str, Any],
    outcome: CycleOutcome,
    *,
    generation: int | None,
    now: datetime,
    heartbeat: timedelta,
    handled_request: str | None = None,
) -> dict[str, Any] | None:
    """The new status, or None when writing it would change nothing worth a write."""
    stamp = timestamp(now)
    conditions = previous.get("conditions") or []
    message = cut(storable_text(outcome.message), MAX_MESSAGE_LENGTH)
    ready = condition(
        READY,
        outcome.account_answered,
        Reason.ACCOUNT_REACHABLE if outcome.account_answered else outcome.reason,
        "EGP answered the listing" if outcome.account_answered else message,
        now=stamp,
        previous=conditions,
    )
    synced = condition(SYNCED, outcome.ok, outcome.reason, message, now=stamp, previous=conditions)
    progress = progress_conditions(
        progress_of(outcome), outcome.reason, message, now=stamp, previous=conditions
    )
    status: dict[str, Any] = {
        "conditions": [ready, synced, *progress],
        "models": _counts(outcome.phase_counts) if outcome.phase_counts else previous.get("models"),
        "observedGeneration": generation,
        "lastSyncTime": stamp,
        "lastSuccessfulSyncTime": stamp if outcome.ok else previous.get("lastSuccessfulSyncTime"),
        "message": None if outcome.ok else message,
        "lastHandledSyncRequest": handled_request or previous.get("lastHandledSyncRequest"),
    }
    if _without_times(status) == _without_times(previous) and not _heartbeat_due(
        previous, now, heartbeat
    ):
        return None
    return status


def progressing_status(
    previous: Mapping[str, Any], *, generation: int | None, now: datetime
) -> dict[str, Any]:
    """What a source says while a cycle for a generation it has not synced yet runs (a new
    source, a changed spec): Reconciling=True for that generation, so that kstatus reads it
    as InProgress, not as the Current an empty status would be. Ready and Synced are kept."""
    stamp = timestamp(now)
    conditions: list[Mapping[str, Any]] = previous.get("conditions") or []
    kept = [c for c in conditions if c.get("type") not in (RECONCILING, STALLED)]
    message = f"Syncing generation {generation}"
    return {
        "observedGeneration": generation,
        "conditions": [
            *kept,
            *progress_conditions(
                RECONCILING, Reason.PROGRESSING, message, now=stamp, previous=conditions
            ),
        ],
    }


def progress_of(outcome: CycleOutcome) -> str | None:
    """Which of kstatus' conditions a cycle's outcome sets: none for a complete or suspended
    sync, Stalled when a human is needed, Reconciling while a retry may heal it."""
    if outcome.ok or outcome.reason == Reason.SUSPENDED:
        return None
    return STALLED if outcome.reason in STALLED_REASONS else RECONCILING


def _counts(phase_counts: Mapping[Phase, int]) -> dict[str, int]:
    return {
        "total": sum(phase_counts.values()),
        "ready": phase_counts.get(ModelPhase.READY, 0),
        "deploying": phase_counts.get(ModelPhase.DEPLOYING, 0),
        "failed": phase_counts.get(ModelPhase.FAILED, 0),
        "deploymentTimeout": phase_counts.get(ModelPhase.DEPLOYMENT_TIMEOUT, 0),
        "unknown": phase_counts.get(ModelPhase.UNKNOWN, 0),
        "missing": phase_counts.get(ModelPhase.MISSING, 0),
    }


def _without_times(status: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in status.items() if k not in _TIMES and v is not None}


def _heartbeat_due(previous: Mapping[str, Any], now: datetime, heartbeat: timedelta) -> bool:
    last = previous.get("lastSyncTime")
    if not last:
        return True
    return now - parse_timestamp(last) >= heartbeat
