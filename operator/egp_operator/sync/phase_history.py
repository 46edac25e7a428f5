"""How long, and how often: when an EGPModel entered its phase (`status.phaseSince`), its last
transitions (`status.history`), and whether it flaps.

Pure, over the stored status and the cycle's time: a transition is seen by the cycle that first
lists the new phase, so every time here is known to within the source's refreshInterval. A
status that did not change phase keeps both fields as they are, so a settled cycle still writes
nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from egp_operator.bounds import MAX_HISTORY_MESSAGE_LENGTH, MAX_PHASE_HISTORY, cut, storable_text
from egp_operator.sync.mirrored import StoredStatus
from egp_operator.vocabulary import (
    FLAPPING,
    READY,
    RECONCILING,
    STALLED,
    ModelPhase,
    Phase,
    Reason,
    condition,
    parse_timestamp,
    timestamp,
)

#: A model that changed phase at least this many times within FLAPPING_WINDOW flaps: it gets a
#: Flapping condition (and one Warning Event as it starts) until its transitions age out.
FLAPPING_TRANSITIONS: Final = 4
FLAPPING_WINDOW: Final = timedelta(hours=1)
#: The phases a deploy ends in: the time from Deploying to one of them is a deploy's duration.
DEPLOY_OUTCOMES: Final = frozenset(
    {ModelPhase.READY, ModelPhase.FAILED, ModelPhase.DEPLOYMENT_TIMEOUT}
)
#: The earliest `created_at` believed: anything older is not a time EGP could have written.
_EARLIEST: Final = datetime(2000, 1, 1, tzinfo=UTC)
_LINE_BREAKS: Final = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True, slots=True)
class PhaseTime:
    """What a status says of its phase's time: `since`, and `history` oldest first."""

    since: str
    history: list[dict[str, str]]


def phase_time(
    previous: StoredStatus,
    phase: Phase,
    *,
    now: str,
    why: str | None,
    created_at: str | None = None,
) -> PhaseTime:
    """`phaseSince` and `history` of a status in `phase`, written over `previous`.

    A new phase starts now and adds a transition (the phase left, the one entered, now, and
    `why` on one bounded line); the same phase keeps what the status says. The first time a
    model is seen, there is no transition, and the best evidence of when its phase began:
    its upstream `created_at` for a model still Deploying (its deploy began when it was
    created), else now. A status written before these fields existed takes the time its
    Ready, Reconciling or Stalled condition last changed."""
    history = [dict(entry) for entry in previous.history[-MAX_PHASE_HISTORY:]]
    if previous.phase is None:
        first = _created(created_at, now) if phase == ModelPhase.DEPLOYING else None
        return PhaseTime(first or now, history)
    if previous.phase == phase:
        missing_since = previous.missing_since if phase == ModelPhase.MISSING else None
        since = previous.phase_since or missing_since or _since_conditions(previous) or now
        return PhaseTime(since, history)
    entry = {"from": previous.phase, "to": phase, "time": now}
    if why:
        entry["message"] = _one_line(why)
    return PhaseTime(now, [*history, entry][-MAX_PHASE_HISTORY:])


def deploy_seconds(previous: StoredStatus, phase: Phase, now: datetime) -> float | None:
    """How long a deploy took, when this status ends one: Deploying until Ready, Failed or
    DeploymentTimeout, measured from the stored `phaseSince`. None for any other change."""
    if previous.phase != ModelPhase.DEPLOYING or phase not in DEPLOY_OUTCOMES:
        return None
    started = _parsed(previous.phase_since)
    if started is None:
        return None
    return max((now - started).total_seconds(), 0.0)


def flapping_condition(
    history: Sequence[Mapping[str, Any]],
    *,
    now: str,
    previous: Sequence[Mapping[str, Any]],
) -> dict[str, Any] | None:
    """The Flapping condition while the model changed phase FLAPPING_TRANSITIONS times or
    more within FLAPPING_WINDOW; None (no condition) otherwise."""
    if len(history) < FLAPPING_TRANSITIONS:  # most models: nothing to parse
        return None
    recent = _recent(history, parse_timestamp(now))
    if len(recent) < FLAPPING_TRANSITIONS:
        return None
    path = " -> ".join([str(recent[0].get("from")), *(str(e.get("to")) for e in recent)])
    minutes = int(FLAPPING_WINDOW.total_seconds() // 60)
    message = f"Changed phase {len(recent)} times in the last {minutes} minutes: {path}"
    return condition(FLAPPING, True, Reason.PHASE_FLAPPING, message, now=now, previous=previous)


def _recent(history: Sequence[Mapping[str, Any]], now: datetime) -> list[Mapping[str, Any]]:
    """The transitions of `history` within FLAPPING_WINDOW of `now`, oldest first."""
    since = now - FLAPPING_WINDOW
    recent = []
    for entry in history:
        at = _parsed(entry.get("time"))
        if at is not None and at > since:
            recent.append(entry)
    return recent


def _one_line(text: str) -> str:
    return cut(storable_text(_LINE_BREAKS.sub(" ", text)).strip(), MAX_HISTORY_MESSAGE_LENGTH)


def _created(created_at: str | None, now: str) -> str | None:
    """`created_at` as a metav1.Time, if it is a time EGP could have written: not before
    2000, not after `now`. Upstream sends it; a hostile value is simply not believed."""
    created = _parsed(created_at)
    if created is None or not _EARLIEST <= created <= parse_timestamp(now):
        return None
    return timestamp(created.astimezone(UTC))


def _since_conditions(previous: StoredStatus) -> str | None:
    """When the phase's conditions last changed: the best a status without phaseSince says."""
    times = [
        parsed
        for c in previous.conditions
        if c.get("type") in (READY, RECONCILING, STALLED)
        and (parsed := _parsed(c.get("lastTransitionTime"))) is not None
    ]
    return timestamp(max(times)) if times else None


def _parsed(value: object) -> datetime | None:
    """An RFC 3339 time (a naive one taken as UTC), or None for anything else."""
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
