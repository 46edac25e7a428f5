"""The pure planner: (complete listing, mirrored objects, policy, clock) -> plan.

No I/O here, so every rule of the mirror is unit-tested without a cluster: what to create, which
status or labels changed, what went missing, what the Delete policy removes, and which phase
transitions deserve an Event. Nothing is written when nothing changed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from egp_operator.bounds import MAX_EVENTS_PER_CYCLE, MAX_MODEL_ID_LENGTH
from egp_operator.resources.models import MODEL_KIND, SOURCE_KIND, DeletionPolicy
from egp_operator.sync.mirrored import EMPTY_STATUS, MirroredModel, status_digest
from egp_operator.sync.model_status import StatusRecipe, is_missing_as, missing_status, phase_of
from egp_operator.sync.naming import model_labels, object_name
from egp_operator.sync.phase_history import deploy_seconds
from egp_operator.sync.upstream import UpstreamModel
from egp_operator.vocabulary import (
    FLAPPING,
    PHASES,
    READY,
    EventType,
    ModelPhase,
    Phase,
    Reason,
    parse_timestamp,
    timestamp,
)

WARNING_PHASES: Final = frozenset(
    {ModelPhase.FAILED, ModelPhase.DEPLOYMENT_TIMEOUT, ModelPhase.MISSING, ModelPhase.UNKNOWN}
)


@dataclass(frozen=True)
class SourcePolicy:
    """What the planner needs to know of the EGPSource. `uid`: the source's; only EGPModels
    whose controller ownerReference names it are its mirror. `max_models`: the most EGPModels
    the source keeps, Missing ones included (EGP_OPERATOR_MAX_MODELS_PER_SOURCE)."""

    namespace: str
    name: str
    deletion_policy: DeletionPolicy = "Retain"
    missing_grace_period: timedelta = timedelta(hours=1)
    uid: str = ""
    max_models: int = 20_000


@dataclass(frozen=True)
class Create:
    """A new EGPModel. Its status is built when it is written, from `recipe`: a plan of
    thousands of creates holds references, not thousands of statuses."""

    name: str
    model_id: str
    labels: dict[str, str]
    recipe: StatusRecipe

    @property
    def status(self) -> dict[str, Any]:
        return self.recipe.build()


@dataclass(frozen=True)
class Update:
    """Only what changed: `labels` None when they are right; `recipe` a whole status that
    replaces the stored one, or `status_changes` fields merged over it (a model gone missing
    keeps what it was), or neither when the status is right."""

    name: str
    model_id: str
    labels: dict[str, str] | None
    recipe: StatusRecipe | None = None
    status_changes: dict[str, Any] | None = None

    @property
    def status(self) -> dict[str, Any] | None:
        """What the write says of the status (the whole of it, or the fields it changes)."""
        return self.recipe.build() if self.recipe is not None else self.status_changes


@dataclass(frozen=True)
class Delete:
    name: str
    model_id: str
    reason: str


@dataclass(frozen=True)
class Event:
    object_name: str
    type: EventType
    reason: str
    message: str
    kind: str = MODEL_KIND


@dataclass(frozen=True, slots=True)
class Transition:
    """A model's phase change: the phase entered, and the deploy it ends, if it ends one
    (`phase_history.deploy_seconds`)."""

    phase: Phase
    deploy_seconds: float | None = None


@dataclass
class Plan:
    creates: list[Create] = field(default_factory=list)
    updates: list[Update] = field(default_factory=list)
    deletes: list[Delete] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    #: Models not mirrored because upstream sent something no object can hold (an id too long).
    refused: list[str] = field(default_factory=list)
    #: Missing models deleted, oldest first, to keep the source within its object budget.
    pruned: int = 0
    #: EGPModels that name this source but are not owned by it: left alone, and reported.
    lookalikes: list[str] = field(default_factory=list)
    #: Events on the source itself, beside the per-model budget; `events` ends with them.
    source_events: list[Event] = field(default_factory=list)
    #: Mirrored models (after the plan) by (phase, vendor), for the source's status and metrics.
    model_counts: Counter[tuple[Phase, str]] = field(default_factory=Counter)
    #: The phase changes this plan writes, for the metrics.
    transitions: list[Transition] = field(default_factory=list)
    #: Mirrored models (after the plan) with a Flapping condition.
    flapping: int = 0

    @property
    def phase_counts(self) -> dict[Phase, int]:
        counts: dict[Phase, int] = dict.fromkeys(PHASES, 0)
        for (phase, _), count in self.model_counts.items():
            counts[phase] += count
        return counts

    @property
    def is_empty(self) -> bool:
        return not (self.creates or self.updates or self.deletes or self.events)


@dataclass(frozen=True)
class _Settled:
    """A model a plan found mirrored as it should be, and what it was checked against."""

    record: int  # the upstream record's fingerprint
    mirrored: MirroredModel  # the very index entry: a new watch event replaces it
    phase: Phase
    vendor: str


class PlanMemo:
    """What a source's last plan found settled. A model whose upstream record and EGPModel are
    both as they were then needs no status built and compared again: in a steady cycle at
    10,000 models that was half the CPU (bench/FINDINGS.md section 9). It holds a fingerprint
    and a reference per model, not a copy, and only what the last plan saw."""

    def __init__(self) -> None:
        self._settled: dict[str, _Settled] = {}
        #: The look-alikes last reported: an Event is posted when they change, not every cycle.
        self._lookalikes: frozenset[str] = frozenset()


def make_plan(
    listing: Iterable[UpstreamModel],
    mirrored: Iterable[MirroredModel],
    policy: SourcePolicy,
    now: datetime,
    *,
    memo: PlanMemo | None = None,
) -> Plan:
    """The writes that make the mirror equal a *complete* listing. Never call it on a partial
    one: models it does not contain are marked missing or deleted. `memo`, the same object
    for every plan of a source, lets it skip what the last plan found settled."""
    stamp = timestamp(now)
    result = Plan()
    owned = _owned(mirrored, policy, result, memo)
    existing = _one_per_model(owned, result)
    upstream: dict[str, UpstreamModel] = {model.id: model for model in listing}
    last_settled = memo._settled if memo is not None else {}
    settled: dict[str, _Settled] = {}

    for model_id, model in upstream.items():
        if len(model_id) > MAX_MODEL_ID_LENGTH:
            result.refused.append(model_id)
            continue
        current = existing.get(model_id)
        fingerprint = model.fingerprint if memo is not None and current else None
        known = last_settled.get(model_id)
        if known is not None and known.mirrored is current and known.record == fingerprint:
            result.model_counts[known.phase, known.vendor] += 1
            settled[model_id] = known
            continue
        phase = phase_of(model.status)
        labels = model_labels(
            source=policy.name,
            model_id=model_id,
            vendor=model.vendor,
            model_type=model.type,
            phase=phase,
        )
        result.model_counts[phase, model.vendor or ""] += 1
        if current is None:
            name = object_name(policy.namespace, policy.name, model_id, model.name)
            recipe = StatusRecipe(model, EMPTY_STATUS, stamp, generation=1)
            result.creates.append(Create(name, model_id, labels, recipe))
            continue
        recipe = StatusRecipe(model, current.status, stamp, current.generation)
        written = _update(result, current, labels, recipe, now)
        flapping = _flapping(current.status.conditions) is not None
        if not written and fingerprint is not None and not flapping:
            # A flapping model is built again every cycle: its condition ends with time.
            settled[model_id] = _Settled(fingerprint, current, phase, model.vendor or "")

    missing = [
        (model_id, current) for model_id, current in existing.items() if model_id not in upstream
    ]
    kept = len(upstream) - len(result.refused)
    for model_id, current in _within_object_budget(missing, kept, policy, result, stamp):
        changes = missing_status(current.status, now=stamp, generation=current.generation)
        if policy.deletion_policy == "Delete" and _grace_over(changes, policy, now):
            result.deletes.append(
                Delete(current.name, model_id, "missing upstream past its grace period")
            )
            continue
        result.model_counts[ModelPhase.MISSING, current.status.vendor or ""] += 1
        labels = model_labels(
            source=policy.name,
            model_id=model_id,
            vendor=current.status.vendor,
            model_type=current.status.type,
            phase=ModelPhase.MISSING,
        )
        _mark_missing(result, current, labels, changes, now)
    result.events = [*_within_budget(result.events, policy), *result.source_events]
    if memo is not None:
        memo._settled = settled
    return result


def _owned(
    mirrored: Iterable[MirroredModel], policy: SourcePolicy, result: Plan, memo: PlanMemo | None
) -> list[MirroredModel]:
    """The source's own EGPModels. One that names the source without its controller
    ownerReference (made by hand, or by another tool) is never adopted, rewritten or deleted:
    it is reported, by an Event on the source whenever the set of them changes."""
    owned: list[MirroredModel] = []
    for model in mirrored:
        if model.controller_uid == policy.uid:
            owned.append(model)
        else:
            result.lookalikes.append(model.name)
    names = frozenset(result.lookalikes)
    if memo is None or names != memo._lookalikes:
        if names:
            shown = ", ".join(sorted(names)[:5]) + (", ..." if len(names) > 5 else "")
            result.source_events.append(
                Event(
                    policy.name,
                    EventType.WARNING,
                    Reason.UNOWNED_MODELS_IGNORED,
                    f"{len(names)} EGPModel(s) name this source but are not owned by it, so"
                    f" the operator leaves them alone: {shown}",
                    kind=SOURCE_KIND,
                )
            )
        if memo is not None:
            memo._lookalikes = names
    return owned


def _within_object_budget(
    missing: list[tuple[str, MirroredModel]],
    kept: int,
    policy: SourcePolicy,
    result: Plan,
    stamp: str,
) -> list[tuple[str, MirroredModel]]:
    """The Missing models the source may keep beside the `kept` listed ones: within
    `policy.max_models` EGPModels in all, whatever the deletion policy. Past it, the models
    missing the longest are deleted first, and an Event on the source says so; an account
    whose ids change at every listing can no longer fill etcd with Missing objects."""
    room = max(policy.max_models - kept, 0)
    if len(missing) <= room:
        return missing
    oldest_first = sorted(
        missing, key=lambda item: (item[1].status.missing_since or stamp, item[1].name)
    )
    pruned, kept_missing = oldest_first[: len(missing) - room], oldest_first[len(missing) - room :]
    for model_id, current in pruned:
        result.deletes.append(
            Delete(current.name, model_id, "missing, and the source is over its object budget")
        )
    result.pruned = len(pruned)
    result.source_events.append(
        Event(
            policy.name,
            EventType.WARNING,
            Reason.MISSING_PRUNED,
            f"Deleted {len(pruned)} Missing EGPModel(s), the longest missing first: the source"
            f" keeps at most {policy.max_models} EGPModels, Missing ones included"
            " (EGP_OPERATOR_MAX_MODELS_PER_SOURCE)",
            kind=SOURCE_KIND,
        )
    )
    return kept_missing


def _within_budget(events: list[Event], policy: SourcePolicy) -> list[Event]:
    """At most MAX_EVENTS_PER_CYCLE Events on models, Warnings first; past it, one Event on
    the source counts the rest by phase, so 5,000 flapping models make 51 Events, not 5,000."""
    if len(events) <= MAX_EVENTS_PER_CYCLE:
        return events
    ordered = sorted(events, key=lambda event: event.type != EventType.WARNING)
    kept, rest = ordered[:MAX_EVENTS_PER_CYCLE], ordered[MAX_EVENTS_PER_CYCLE:]
    by_phase = Counter(event.reason for event in rest)
    summary = ", ".join(f"{count} to {phase}" for phase, count in sorted(by_phase.items()))
    warning = any(event.type == EventType.WARNING for event in rest)
    aggregate = Event(
        policy.name,
        EventType.WARNING if warning else EventType.NORMAL,
        Reason.PHASE_CHANGES,
        f"{len(rest)} more models changed phase than get an Event each ({summary});"
        " see kubectl get egpmodels",
        kind=SOURCE_KIND,
    )
    return [*kept, aggregate]


def _update(
    result: Plan,
    current: MirroredModel,
    labels: dict[str, str],
    recipe: StatusRecipe,
    now: datetime,
) -> bool:
    """Plan the writes that make `current` say `labels` and the status `recipe` builds; False
    when none. The status is built here to be compared, and again when it is written."""
    status = recipe.build()
    result.flapping += _flapping(status["conditions"]) is not None
    stored = current.status.digest
    labels_changed = _labels_changed(current, labels)
    status_changed = stored is None or status_digest(status) != stored
    if not (labels_changed or status_changed):
        return False
    result.updates.append(
        Update(
            current.name,
            current.model_id,
            labels if labels_changed else None,
            recipe=recipe if status_changed else None,
        )
    )
    _note_transition(result, current, status, now)
    return True


def _mark_missing(
    result: Plan,
    current: MirroredModel,
    labels: dict[str, str],
    changes: dict[str, Any],
    now: datetime,
) -> None:
    """Plan the writes that say `current` is missing, unless it already says so."""
    result.flapping += _flapping(changes["conditions"]) is not None
    labels_changed = _labels_changed(current, labels)
    status_changed = not is_missing_as(current.status, changes)
    if not (labels_changed or status_changed):
        return
    result.updates.append(
        Update(
            current.name,
            current.model_id,
            labels if labels_changed else None,
            status_changes=changes if status_changed else None,
        )
    )
    _note_transition(result, current, changes, now)


def _labels_changed(current: MirroredModel, labels: Mapping[str, str]) -> bool:
    return any(current.labels.get(key) != value for key, value in labels.items())


def _note_transition(
    result: Plan, current: MirroredModel, status: Mapping[str, Any], now: datetime
) -> None:
    """A phase change gets an Event and counts in the metrics; the change that starts a
    model's flapping gets one Warning Event more (and none while it goes on)."""
    before, after = current.status.phase, status["phase"]
    if before == after:
        return
    result.events.append(_transition_event(current.name, before, after, status))
    if before is not None:
        deploy = deploy_seconds(current.status, after, now)
        result.transitions.append(Transition(after, deploy))
    flapping = _flapping(status["conditions"])
    if flapping is not None and _flapping(current.status.conditions) is None:
        message = str(flapping.get("message", ""))
        result.events.append(Event(current.name, EventType.WARNING, Reason.PHASE_FLAPPING, message))


def _flapping(conditions: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The Flapping condition among `conditions`, if any."""
    return next((c for c in conditions if c.get("type") == FLAPPING), None)


def _transition_event(
    name: str, before: str | None, after: str, status: Mapping[str, Any]
) -> Event:
    conditions: list[Mapping[str, Any]] = status.get("conditions", [])
    ready = next((c for c in conditions if c.get("type") == READY), {})
    detail = ready.get("message") or ""
    message = f"Phase changed from {before or 'none'} to {after}" + (
        f": {detail}" if detail else ""
    )
    kind = EventType.WARNING if after in WARNING_PHASES else EventType.NORMAL
    return Event(name, kind, after, message)


def _one_per_model(mirrored: Iterable[MirroredModel], result: Plan) -> dict[str, MirroredModel]:
    """Index by model id; a duplicate object (a race, a copy) is deleted, the oldest kept."""
    by_id: dict[str, MirroredModel] = {}
    for model in sorted(mirrored, key=lambda m: (m.creation_timestamp, m.name)):
        if model.model_id in by_id:
            result.deletes.append(Delete(model.name, model.model_id, "duplicate of another"))
        else:
            by_id[model.model_id] = model
    return by_id


def _grace_over(status: Mapping[str, Any], policy: SourcePolicy, now: datetime) -> bool:
    since = parse_timestamp(status["missingSince"])
    return now - since >= policy.missing_grace_period
