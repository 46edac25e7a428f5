"""Property-based fuzzing of everything a hostile EGP endpoint controls.

Whatever a `baseURL` answers (bytes, headers, transport failures) must end in a complete listing
or a typed `EGPError` whose text never holds the API key and fits a message; whatever records a
listing holds must plan valid object names and labels, statuses within their bound, and no
writes on a second look. Budgets are fixed and runs derandomized, so the file is reproducible
and takes seconds (strategies: `fuzz_strategies.py`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

import httpx
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from egp_operator.bounds import (
    MAX_EVENTS_PER_CYCLE,
    MAX_FREE_FORM_BYTES,
    MAX_JSON_DEPTH,
    MAX_MESSAGE_LENGTH,
    MAX_MODEL_ID_LENGTH,
    MAX_STATUS_BYTES,
    json_depth,
)
from egp_operator.egp import (
    EGPClient,
    EGPError,
    IncompleteListingError,
    InferenceModel,
    InferenceModelList,
    MalformedResponseError,
)
from egp_operator.egp.client import ModelListing, ReadLimits, RetryPolicy, check_api_key
from egp_operator.metrics import KNOWN_CODES, KNOWN_VENDORS, code_label, vendor_label
from egp_operator.sync.mirrored import MirroredModel, StoredStatus
from egp_operator.sync.naming import (
    MANAGED_BY_LABEL,
    MODEL_ID_LABEL,
    PHASE_LABEL,
    SOURCE_LABEL,
    TYPE_LABEL,
    VENDOR_LABEL,
)
from egp_operator.sync.planner import Plan, SourcePolicy, make_plan
from egp_operator.sync.source_status import CycleOutcome, source_status
from egp_operator.sync.upstream import UpstreamModel, keep_for_mirror
from egp_operator.vocabulary import Reason
from tests.unit.fuzz_strategies import (
    API_KEYS,
    Answer,
    Body,
    Repeat,
    answers,
    build,
    huge_text,
    key_forms,
    listing_records,
    text,
)

#: Small fixed budgets, no example database (nothing written into the work tree), and the same
#: examples on every run: a fuzz test that passes or fails by luck is a broken test.
FUZZ: Final = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
    ],
)
#: The planner's examples hold up to 4 MB of records and plan three cycles: fewer of them.
FUZZ_PLANNER: Final = settings(FUZZ, max_examples=100)

T0 = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)

DNS1123_SUBDOMAIN: Final = re.compile(
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
)
LABEL_VALUE: Final = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
LABEL_KEYS: Final = {
    MANAGED_BY_LABEL,
    SOURCE_LABEL,
    MODEL_ID_LABEL,
    VENDOR_LABEL,
    TYPE_LABEL,
    PHASE_LABEL,
}
FREE_FORM_FIELDS: Final = ("vendorConfiguration", "extraFields", "modelMetadata")


def size(document: Any) -> int:
    """Bytes of `document` as the Kubernetes client sends it (kube.py) and rendering counts."""
    return len(json.dumps(document, separators=(",", ":")))


#: A UTF-16 surrogate that no JSON decoder paired with its other half.
_LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _as_go_decodes(value: Any) -> Any:
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_as_go_decodes(k): _as_go_decodes(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_go_decodes(item) for item in value]
    return value


def stored(status: dict[str, Any]) -> dict[str, Any]:
    """The status as the API server hands it back. It decodes the body with Go's JSON decoder,
    which joins an escaped surrogate pair into one character (as Python's does) and reads an
    unpaired surrogate (`"\\ud800"`) as U+FFFD; the status is at most 65 levels deep here."""
    loaded: dict[str, Any] = _as_go_decodes(json.loads(json.dumps(status)))
    return loaded


# --- 1. the client reads any answer into a listing or a typed error without the key ----------


@dataclass(frozen=True)
class Scenario:
    key: str
    answers: tuple[Answer, ...]
    page_size: int
    max_models: int
    max_page_bytes: int


SCENARIOS: Final = st.builds(
    Scenario,
    key=st.sampled_from(API_KEYS),
    answers=st.lists(answers(), min_size=1, max_size=3).map(tuple),
    page_size=st.sampled_from([1, 2, 3, 5, 1_000, 1_000]),
    max_models=st.sampled_from([1, 3, 10, 20_000]),
    max_page_bytes=st.sampled_from([256, 4_096, 16 * 1024 * 1024]),
)


class _Stream(httpx.AsyncByteStream):
    """A streamed body (what `aiter_raw` reads), optionally failing after its first half."""

    def __init__(self, body: bytes, error: Exception | None) -> None:
        self.body, self.error = body, error

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self.error is None:
            yield self.body
            return
        yield self.body[: len(self.body) // 2]
        raise self.error


def _transport(scenario: Scenario, bodies: list[bytes]) -> httpx.MockTransport:
    """Answers every request with the scenario's next answer; the last one repeats. Each body
    is appended to `bodies` as sent."""
    served = iter(scenario.answers)
    last = scenario.answers[-1]

    def handler(request: httpx.Request) -> httpx.Response:
        answer = next(served, last)
        echoed = key_forms(scenario.key)[answer.form]
        if answer.failure == "connect":
            raise httpx.ConnectError(f"could not connect with {echoed}", request=request)
        if answer.failure == "timeout":
            raise httpx.ReadTimeout(f"timed out reading {echoed}", request=request)
        if answer.failure == "protocol":
            raise httpx.RemoteProtocolError(f"illegal header {echoed}", request=request)
        error = httpx.ReadError(f"reset after {echoed}") if answer.failure == "mid_body" else None
        headers = answer.headers | dict.fromkeys(answer.echo, echoed)
        bodies.append(answer.body.render(scenario.key))
        return httpx.Response(answer.status, headers=headers, stream=_Stream(bodies[-1], error))

    return httpx.MockTransport(handler)


async def _no_sleep(_: float) -> None:
    return None


async def _list(
    scenario: Scenario, bodies: list[bytes] | None = None
) -> ModelListing[InferenceModel] | EGPError:
    """The walk's listing or its error; `bodies` gets the bodies it was sent."""
    client = EGPClient(
        api_key=scenario.key,
        base_url="http://127.0.0.1:1",
        transport=_transport(scenario, [] if bodies is None else bodies),
        sleep=_no_sleep,
        retry=RetryPolicy(max_retries=0),
        limits=ReadLimits(max_page_bytes=scenario.max_page_bytes, max_models=scenario.max_models),
    )
    async with client:
        try:
            return await client.list_models(page_size=scenario.page_size)
        except EGPError as error:
            return error


def _shown_chain(error: BaseException) -> Iterator[BaseException]:
    """`error` and every exception a traceback of it shows (log.exception prints them)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        if isinstance(current, IncompleteListingError) and current.cause is not None:
            yield from _shown_chain(current.cause)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )


def _assert_key_never_shown(error: EGPError, key: str) -> None:
    for shown in _shown_chain(error):
        texts = [str(shown), repr(shown)]
        if isinstance(shown, EGPError):
            texts.append(shown.message)
            assert len(shown.message) <= MAX_MESSAGE_LENGTH, shown.message[:200]
        for text_ in texts:
            assert key not in text_, f"{type(shown).__name__} shows the API key: {text_[:300]!r}"


def _scenario(*answers_: Answer, key: str = API_KEYS[0]) -> Scenario:
    return Scenario(key, answers_, page_size=5, max_models=20_000, max_page_bytes=1 << 24)


_NOT_JSON = Body(kind="bytes", raw=b"<html>")


@FUZZ
@given(SCENARIOS)
@example(_scenario(Answer(200, body=_NOT_JSON, echo=("content-type",))))
@example(
    _scenario(Answer(200, body=Body(kind="page", page={"items": []}), echo=("content-encoding",)))
)
@example(_scenario(Answer(503, {"retry-after": "Mon, 01 Jan 9999999999 00:00:00"}, _NOT_JSON)))
def test_any_answer_ends_in_a_complete_listing_or_a_typed_error_without_the_key(
    scenario: Scenario,
) -> None:
    check_api_key(scenario.key)

    bodies: list[bytes] = []
    outcome = asyncio.run(_list(scenario, bodies))  # anything but an EGPError escapes and fails

    event(type(outcome).__name__)  # what the examples end in: --hypothesis-show-statistics
    if isinstance(outcome, EGPError):
        _assert_key_never_shown(outcome, scenario.key)
        return
    ids = [model.id for model in outcome.models]
    assert len(set(ids)) == len(ids), "a listing holds a model twice"
    assert len(ids) <= scenario.max_models
    # No retries: a listing ends on the last body served, and the total it declares is the one
    # the walk checked.
    declared = InferenceModelList.model_validate(json.loads(bodies[-1])).total
    assert declared is None or len(ids) >= declared, "a short listing was returned"


NON_FINITE = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e400"])


@FUZZ
@given(
    where=st.sampled_from(["vendor_configuration", "model_metadata", "unknown_field"]),
    number=NON_FINITE,
)
def test_a_page_with_nan_or_infinity_never_yields_a_status_kubernetes_cannot_parse(
    where: str, number: str
) -> None:
    """Kubernetes parses strict JSON: `NaN` or `Infinity` in a status body is a 400, so such a
    record must be refused as malformed or mirrored without the number, never written as is."""
    body = f'{{"items":[{{"id":"m","{where}":{{"x":[{number}]}}}}],"has_more":false}}'
    scenario = _scenario(Answer(200, body=Body(kind="bytes", raw=body.encode())))

    outcome = asyncio.run(_list(scenario))

    if isinstance(outcome, EGPError):
        assert isinstance(outcome, MalformedResponseError)
        return
    kept = [keep_for_mirror(model) for model in outcome.models]
    for create in make_plan(kept, [], SourcePolicy("team-a", "prod"), T0).creates:
        json.dumps(create.status, allow_nan=False)  # ValueError: what the API server refuses


# --- 2. the planner: any records plan valid objects, bounded statuses, then no writes --------


@dataclass(frozen=True)
class PlannerCase:
    records: list[dict[str, Any]]
    #: Plain models added to the listing, so that a later cycle can change more phases than
    #: get an Event each.
    bulk: int
    #: What the third cycle does to each model, by position (repeating).
    changes: tuple[Literal["keep", "drop", "flip"], ...]
    policy: SourcePolicy


NAMES = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True)


PLANNER_CASES: Final = st.builds(
    PlannerCase,
    records=listing_records(),
    bulk=st.sampled_from([0, 0, 3, MAX_EVENTS_PER_CYCLE + 10, 130]),
    changes=st.lists(st.sampled_from(["keep", "drop", "flip"]), min_size=1, max_size=8).map(tuple),
    policy=st.builds(
        SourcePolicy,
        namespace=NAMES,
        name=NAMES,
        deletion_policy=st.sampled_from(["Retain", "Delete"]),
        missing_grace_period=st.sampled_from([timedelta(0), timedelta(hours=1)]),
    ),
)


def _models(case: PlannerCase) -> list[UpstreamModel]:
    bulk = [{"id": f"bulk-{i}", "status": "deploying"} for i in range(case.bulk)]
    return [
        keep_for_mirror(InferenceModel.model_validate(build(r))) for r in [*case.records, *bulk]
    ]


def _flipped(model: UpstreamModel) -> UpstreamModel:
    status = "ready" if model.status == "failed" else "failed"
    return dataclasses.replace(model, status=status, status_reason=None)


def _third_listing(models: list[UpstreamModel], case: PlannerCase) -> list[UpstreamModel]:
    changed = []
    for index, model in enumerate(models):
        change = case.changes[index % len(case.changes)]
        if change != "drop":
            changed.append(_flipped(model) if change == "flip" else model)
    return changed


def _assert_labels(labels: dict[str, str]) -> None:
    assert set(labels) == LABEL_KEYS
    for value in labels.values():
        assert len(value) <= 63, f"label value {value!r}"
        assert LABEL_VALUE.fullmatch(value), f"label value {value!r}"


def _assert_status(status: dict[str, Any]) -> None:
    assert size(status) <= MAX_STATUS_BYTES
    free_form = {name: status[name] for name in FREE_FORM_FIELDS if name in status}
    assert size(free_form) <= MAX_FREE_FORM_BYTES
    for condition in status["conditions"]:
        assert len(condition["message"]) <= MAX_MESSAGE_LENGTH, (
            f"{condition['type']} condition message of {len(condition['message'])} characters:"
            f" {condition['message'][:120]!r}..."
        )
    for name in FREE_FORM_FIELDS:
        if name in status:
            assert json_depth(status[name]) <= MAX_JSON_DEPTH


def _mirror(result: Plan) -> list[MirroredModel]:
    """What the cluster holds after the plan's creates were applied and read back."""
    return [
        MirroredModel(
            c.name, c.model_id, c.labels, StoredStatus.of(stored(c.status)), creation_timestamp="t0"
        )
        for c in result.creates
    ]


def _one(record: dict[str, Any]) -> PlannerCase:
    return PlannerCase([{"id": "m", **record}], 0, ("keep",), SourcePolicy("team-a", "prod"))


@FUZZ_PLANNER
@given(PLANNER_CASES)
@example(_one({"status": Repeat("\U000e0001", 100)}))  # repr grows each character to 10
@example(_one({"model_vendor": "\ud800"}))  # a label value that UTF-8 cannot hash
@example(_one({"name": "\ud800"}))  # the API server reads it back as U+FFFD
def test_any_listing_plans_valid_objects_and_bounded_statuses_then_no_writes(
    case: PlannerCase,
) -> None:
    models = _models(case)
    refused = [m.id for m in models if len(m.id) > MAX_MODEL_ID_LENGTH]
    accepted = [m.id for m in models if len(m.id) <= MAX_MODEL_ID_LENGTH]

    first = make_plan(models, [], case.policy, T0)

    assert first.refused == refused
    assert not first.updates, "a first cycle only creates"
    assert not first.deletes, "a first cycle only creates"
    assert not first.events, "a first cycle only creates"
    assert sorted(c.model_id for c in first.creates) == sorted(accepted)
    assert sum(first.model_counts.values()) == len(accepted)
    names = [create.name for create in first.creates]
    assert len(set(names)) == len(names), "two models got one object name"
    for create in first.creates:
        assert len(create.name) <= 253, create.name
        assert DNS1123_SUBDOMAIN.fullmatch(create.name), create.name
        _assert_labels(create.labels)
        _assert_status(create.status)
    event(f"refused: {bool(first.refused)}")
    event(f"truncated: {any('truncatedFields' in c.status for c in first.creates)}")
    mirrored = _mirror(first)

    second = make_plan(models, mirrored, case.policy, T0 + timedelta(minutes=5))

    assert second.is_empty, "an unchanged listing planned writes"
    assert second.refused == refused
    assert second.model_counts == first.model_counts

    third_listing = _third_listing(models, case)
    third = make_plan(third_listing, mirrored, case.policy, T0 + timedelta(minutes=10))

    listed = {m.id for m in third_listing}
    assert not third.creates
    assert third.refused == [id_ for id_ in refused if id_ in listed]
    assert set(refused).isdisjoint(u.model_id for u in third.updates)
    assert len(third.events) <= MAX_EVENTS_PER_CYCLE + 1
    event(f"events over budget: {any(e.reason == 'PhaseChanges' for e in third.events)}")
    deleted = {delete.model_id for delete in third.deletes}
    assert deleted <= set(accepted) - listed
    assert not deleted or case.policy.deletion_policy == "Delete"
    created = {c.name: c.status for c in first.creates}
    for update in third.updates:
        if update.labels is not None:
            _assert_labels(update.labels)
        if update.recipe is not None:
            _assert_status(update.recipe.build())
        elif update.status_changes is not None:  # merged over what was there
            _assert_status(created[update.name] | update.status_changes)


# --- 3. the source status: any cycle message is capped and written once ---------------------


@FUZZ
@example(message="\ud800", reason="ServerError", ok=False, answered=True, counts=None)
@given(
    message=text(2_000) | huge_text(20_000),
    reason=st.sampled_from([str(reason) for reason in Reason]),
    ok=st.booleans(),
    answered=st.booleans(),
    counts=st.none() | st.fixed_dictionaries({"Ready": st.integers(0, 10**6)}),
)
def test_any_cycle_message_is_capped_in_the_source_status_and_written_once(
    message: str | Repeat,
    reason: str,
    ok: bool,
    answered: bool,
    counts: dict[Any, int] | None,
) -> None:
    outcome = CycleOutcome(
        ok=ok,
        reason=Reason(reason),
        message=build(message),
        account_answered=answered,
        phase_counts=counts,
    )
    heartbeat = timedelta(minutes=5)

    status = source_status({}, outcome, generation=1, now=T0, heartbeat=heartbeat)

    assert status is not None, "a first status was not written"
    shown = [c["message"] for c in status["conditions"]]
    if not ok:
        shown.append(status["message"])
        assert bool(status["message"]) == bool(outcome.message), "a failure went unexplained"
    assert all(len(m) <= MAX_MESSAGE_LENGTH for m in shown), [len(m) for m in shown]
    again = source_status(
        stored(status), outcome, generation=1, now=T0 + timedelta(minutes=1), heartbeat=heartbeat
    )
    assert again is None, "the same outcome rewrote the source status before its heartbeat"


# --- 4. metrics: upstream values map to a bounded set of label values ------------------------

#: A status code as the client counts it is `str(int)`: HTTP/1.1 carries any three digits.
CODE_LABELS: Final = (
    KNOWN_CODES | {f"{digit}xx" for digit in "0123456789"} | {"other", "transport_error"}
)


@FUZZ
@given(st.lists(st.sampled_from(sorted(KNOWN_VENDORS)) | text(40) | huge_text(500), max_size=50))
def test_any_upstream_vendor_is_counted_under_a_known_vendor_or_other(
    vendors: list[str | Repeat],
) -> None:
    labels = {vendor_label(build(vendor)) for vendor in vendors}

    assert labels <= KNOWN_VENDORS | {"", "other"}
    for vendor in vendors:
        if vendor in KNOWN_VENDORS:
            assert vendor_label(str(vendor)) == vendor


@FUZZ
@given(st.lists(st.none() | st.integers(0, 999) | st.integers(1_000, 10**12), max_size=50))
def test_any_http_status_code_is_counted_under_a_bounded_set_of_code_labels(
    codes: list[int | None],
) -> None:
    for code in codes:
        label = code_label("transport_error" if code is None else str(code))

        assert label in CODE_LABELS
        if code is not None and 100 <= code <= 599:
            assert label in KNOWN_CODES | {f"{digit}xx" for digit in "12345"}
        if code is not None and str(code) in KNOWN_CODES:
            assert label == str(code)
