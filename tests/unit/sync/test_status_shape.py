"""One truth for the status shape: the resource models (which generate the CRDs) describe every
field the fast status builders write, and nothing else.

The builders (sync/model_status.py, sync/source_status.py) write plain dicts, because validating
and dumping a pydantic model per mirrored model adds about 40% to building the statuses (0.19
CPU-s on top of 0.45 at 10,000 models, on the 2-core machine of bench/RESULTS.md), and a steady
cycle rebuilds every one. So these tests hold the builders' output, for hostile upstream input too,
to the models: every key must be a field of its model (as `extra="forbid"` would), and the
whole must validate. A field the models gain but no builder writes fails the last test.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from egp_operator.bounds import MAX_HISTORY_MESSAGE_LENGTH, MAX_PHASE_HISTORY
from egp_operator.egp.models import InferenceModel
from egp_operator.resources.models import Condition, EGPModelStatus, EGPSourceStatus
from egp_operator.sync.mirrored import StoredStatus
from egp_operator.sync.model_status import missing_status, observed_status
from egp_operator.sync.source_status import CycleOutcome, progressing_status, source_status
from egp_operator.sync.upstream import keep_for_mirror
from egp_operator.vocabulary import PHASES, Reason, timestamp
from tests.unit.fuzz_strategies import build, model_record
from tests.unit.test_fuzz_hostile_input import FUZZ

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
HEARTBEAT = timedelta(minutes=5)


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The resource model a field holds (alone, in a list or optional), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (list, typing.Union, types.UnionType):
        for argument in typing.get_args(annotation):
            found = _nested_model(argument)
            if found is not None:
                return found
    return None


def unknown_keys(model: type[BaseModel], data: Mapping[str, Any], at: str = "") -> list[str]:
    """The keys of `data`, at any depth of the resource models, that no field declares."""
    fields = {field.alias or name: field for name, field in model.model_fields.items()}
    unknown = []
    for key, value in data.items():
        if key not in fields:
            unknown.append(at + key)
            continue
        nested = _nested_model(fields[key].annotation)
        items = value if isinstance(value, list) else [value]
        if nested is not None:
            for item in items:
                if isinstance(item, Mapping):
                    unknown += unknown_keys(nested, item, f"{at}{key}.")
    return unknown


def assert_declared(model: type[BaseModel], status: Mapping[str, Any]) -> None:
    assert unknown_keys(model, status) == []
    model.model_validate(status)


def written_model_statuses(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Every status a model can be written with: first seen, changed from every other phase
    over a full history (the newest entry quoting the hostile record), gone missing."""
    model = keep_for_mirror(InferenceModel.model_validate(build(record)))
    seen = observed_status(model, now=timestamp(NOW), previous=StoredStatus(), generation=3)
    full = [
        {"from": "Ready", "to": "Failed", "time": timestamp(NOW), "message": "x" * 256}
    ] * MAX_PHASE_HISTORY
    changed = [
        observed_status(
            model,
            now=timestamp(NOW + timedelta(minutes=1)),
            previous=StoredStatus.of({**seen, "phase": other, "history": full}),
            generation=3,
        )
        for other in PHASES
    ]
    missing = missing_status(StoredStatus.of(seen), now=timestamp(NOW), generation=3)
    return [seen, *changed, missing, seen | missing]  # a merge patch keeps what it does not name


@FUZZ
@given(record=model_record(id_="model-1"))  # a hostile id fails its page, before any status
def test_every_model_status_written_is_declared_by_the_model(record: dict[str, Any]) -> None:
    for status in written_model_statuses(record):
        assert_declared(EGPModelStatus, status)
        # Written together, and bounded like every status field (the CRD says so too).
        assert {"phase", "phaseSince", "history"} <= status.keys()
        assert len(status["history"]) <= MAX_PHASE_HISTORY
        for entry in status["history"]:
            assert len(entry.get("message", "")) <= MAX_HISTORY_MESSAGE_LENGTH
            assert "\n" not in entry.get("message", "")


@FUZZ
@given(
    reason=st.sampled_from(list(Reason)),
    ok=st.booleans(),
    answered=st.booleans(),
    counted=st.booleans(),
)
def test_every_source_status_written_is_declared_by_the_model(
    reason: Reason, ok: bool, answered: bool, counted: bool
) -> None:
    outcome = CycleOutcome(
        ok=ok,
        reason=reason,
        message="why",
        account_answered=answered,
        phase_counts={"Ready": 2, "Failed": 1} if counted else None,
    )
    status = source_status(
        {}, outcome, generation=2, now=NOW, heartbeat=HEARTBEAT, handled_request="x"
    )

    assert status is not None
    assert_declared(EGPSourceStatus, status)
    assert_declared(EGPSourceStatus, progressing_status(status, generation=3, now=NOW))


def test_every_field_of_the_models_is_written_by_some_builder() -> None:
    """A field in the CRD that nothing writes is a promise the operator does not keep."""
    failed = {
        "id": "m-1",
        "name": "m",
        "model_type": "chat",
        "model_vendor": "openai",
        "status": "failed",
        "status_reason": "OOM",
        "model_availability": "available",
        "created_at": "2026-11-29T12:00:00Z",
    }
    deep = {"id": "m-2", "vendor_configuration": {"a": {"b": 1}}, "model_metadata": {"k": "v"}}
    model_statuses = [
        *written_model_statuses(failed | {"created_by_user_id": "u", "odd_field": 1}),
        *written_model_statuses(deep),
    ]
    huge = {"id": "m-3", "vendor_configuration": {"blob": "x" * 300_000}}
    model_statuses += written_model_statuses(huge)
    outcome = CycleOutcome.failed(Reason.SERVER_ERROR, "503", phase_counts={"Ready": 1})
    first = source_status(
        {}, CycleOutcome.synced("ok", {"Ready": 1}), generation=1, now=NOW, heartbeat=HEARTBEAT
    )
    assert first is not None
    source_statuses = [
        first,
        source_status(
            first, outcome, generation=1, now=NOW, heartbeat=HEARTBEAT, handled_request="r"
        ),
    ]

    for model, statuses in ((EGPModelStatus, model_statuses), (EGPSourceStatus, source_statuses)):
        written = {key for status in statuses if status for key in status}
        declared = {field.alias or name for name, field in model.model_fields.items()}
        assert declared - written == set(), model.__name__
    conditions = [c for status in model_statuses for c in status["conditions"]]
    assert {key for condition in conditions for key in condition} == {
        field.alias or name for name, field in Condition.model_fields.items()
    }
