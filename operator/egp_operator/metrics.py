"""Every Prometheus metric the operator exports, in one place (names: `egp_operator_*`).

Alerting rules in deploy/monitoring/ may use only these names; a test checks that. They are
served by metrics_server.py.

The per-source series come from one collector (`SourceMetrics`) that keeps each source's
state as of its last cycle, as crate-operator does: forgetting a source is dropping one entry,
and a cycle replaces its own series without looking at any other source's.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Final

from prometheus_client import REGISTRY, Counter, Gauge, disable_created_metrics
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from egp_operator.egp.models import MODEL_VENDORS
from egp_operator.vocabulary import Phase

#: A `_created` series beside every counter would be read by nothing here; the collector below
#: never makes them, and this keeps the Kubernetes request counter without them too.
disable_created_metrics()  # type: ignore[no-untyped-call]

PREFIX: Final = "egp_operator"
#: Label values that come from upstream are drawn from these sets, so a hostile endpoint
#: cannot make series without end: any other vendor is `other`, any other code its class.
KNOWN_VENDORS: Final = frozenset(MODEL_VENDORS)
OTHER_VENDOR: Final = "other"
KNOWN_CODES: Final = frozenset(
    {"200", "400", "401", "403", "404", "408", "409", "422", "429", "500", "502", "503", "504"}
)

#: Upper bounds of the sync duration histogram, +Inf last.
DURATION_BUCKETS: Final = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, math.inf)
#: Upper bounds of the deploy duration histogram: model deploys take minutes to hours.
DEPLOY_BUCKETS: Final = (
    60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, math.inf,
)  # fmt: skip

SOURCE_LABELS: Final = ("namespace", "source")


@dataclass(frozen=True, slots=True)
class _Histogram:
    """One histogram series: its `_bucket` samples, (`le` as prometheus_client's own
    Histogram writes it, cumulative count) per upper bound, ready to add, and their sum."""

    bounds: tuple[float, ...]
    buckets: tuple[tuple[str, float], ...]
    total: float = 0.0

    @classmethod
    def empty(cls, bounds: tuple[float, ...]) -> _Histogram:
        labels = (floatToGoString(bound) for bound in bounds)  # type: ignore[no-untyped-call]
        return cls(bounds, tuple((le, 0.0) for le in labels))

    def observed(self, value: float) -> _Histogram:
        buckets = tuple(
            (le, count + 1 if value <= bound else count)
            for (le, count), bound in zip(self.buckets, self.bounds, strict=True)
        )
        return _Histogram(self.bounds, buckets, self.total + value)


@dataclass(frozen=True, slots=True)
class _SourceState:
    """One source's series as of its last cycle. Never changed, only replaced: a scrape in
    another thread reads a whole cycle's state or the one before, never half of one."""

    egp_requests: Mapping[str, float]
    duration: _Histogram
    last_success: float | None
    errors: Mapping[str, float]
    models: Mapping[tuple[str, str], float]
    refresh_seconds: float | None
    #: Phase transitions, by the phase entered.
    transitions: Mapping[str, float] = field(default_factory=dict)
    #: Deploys ended, by outcome (the phase entered).
    deploys: Mapping[str, _Histogram] = field(default_factory=dict)
    #: Models with a Flapping condition, as of the last complete listing.
    flapping: float | None = None


_NEW_SOURCE: Final = _SourceState({}, _Histogram.empty(DURATION_BUCKETS), None, {}, {}, None)
_NO_DEPLOYS: Final = _Histogram.empty(DEPLOY_BUCKETS)


def _added(counts: Mapping[str, float], more: Iterable[tuple[str, float]]) -> dict[str, float]:
    total = dict(counts)
    for key, count in more:
        total[key] = total.get(key, 0.0) + count
    return total


class SourceMetrics:
    """A collector of every per-source series, from a `_SourceState` per (namespace, source).

    Cycles run in the event loop and scrapes in a worker thread (metrics_server.py), so the
    map is only read or written under a lock; a scrape holds it just to copy the entries, and
    builds the families from the immutable states after."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sources: dict[tuple[str, str], _SourceState] = {}

    def record_cycle(
        self,
        namespace: str,
        source: str,
        *,
        seconds: float,
        egp_answers: Mapping[str, int],
        model_counts: Mapping[tuple[Phase, str], int] | None,
        refresh_seconds: float | None,
        error_reason: str | None,
        phase_changes: Iterable[tuple[str, float | None]] = (),
        flapping: int | None = None,
    ) -> None:
        """Record one cycle of a source: its duration and EGP answers; the time now as its
        last success if `error_reason` is None, else one error of that reason; its model gauges
        replaced by `model_counts` (a vanished (phase, vendor) pair drops to absent) unless
        None, when the last complete listing's stay; its refresh interval unless None; each
        phase change written (the phase entered, and the seconds of the deploy it ends, or
        None); and its flapping models unless None."""
        changes = list(phase_changes)
        answers = [(code_label(str(code)), float(count)) for code, count in egp_answers.items()]
        models: dict[tuple[str, str], float] | None = None
        if model_counts is not None:
            models = {}
            for (phase, vendor), count in model_counts.items():
                series = (str(phase), vendor_label(vendor))
                models[series] = models.get(series, 0.0) + count
        now = time.time()
        with self._lock:
            state = self._sources.get((namespace, source), _NEW_SOURCE)
            deploys = state.deploys
            ended = [(outcome, took) for outcome, took in changes if took is not None]
            if ended:
                deploys = dict(deploys)
                for outcome, took in ended:
                    deploys[outcome] = deploys.get(outcome, _NO_DEPLOYS).observed(took)
            self._sources[namespace, source] = _SourceState(
                egp_requests=_added(state.egp_requests, answers),
                duration=state.duration.observed(seconds),
                last_success=now if error_reason is None else state.last_success,
                errors=state.errors
                if error_reason is None
                else _added(state.errors, [(str(error_reason), 1.0)]),
                models=state.models if models is None else models,
                refresh_seconds=state.refresh_seconds
                if refresh_seconds is None
                else refresh_seconds,
                transitions=_added(state.transitions, ((phase, 1.0) for phase, _ in changes))
                if changes
                else state.transitions,
                deploys=deploys,
                flapping=state.flapping if flapping is None else float(flapping),
            )

    def forget_refresh_interval(self, namespace: str, source: str) -> None:
        """No sync is due (the source is suspended): nothing to alert on its lateness."""
        with self._lock:
            state = self._sources.get((namespace, source))
            if state is not None:
                self._sources[namespace, source] = replace(state, refresh_seconds=None)

    def forget(self, namespace: str, source: str) -> None:
        """Drop a deleted source's series."""
        with self._lock:
            self._sources.pop((namespace, source), None)

    def describe(self) -> list[Metric]:
        """The families without samples: what REGISTRY checks for clashing names."""
        return self._families({})

    def collect(self) -> list[Metric]:
        with self._lock:
            sources = dict(self._sources)
        return self._families(sources)

    @staticmethod
    def _families(sources: Mapping[tuple[str, str], _SourceState]) -> list[Metric]:
        """Each family once per scrape, with every source's samples added to it: every family
        is there even without samples, as a labelled prometheus_client metric is."""
        requests = CounterMetricFamily(
            f"{PREFIX}_egp_requests",
            "Requests sent to EGP, by HTTP status code (or transport_error).",
            labels=(*SOURCE_LABELS, "code"),
        )
        duration = HistogramMetricFamily(
            f"{PREFIX}_sync_duration_seconds",
            "Wall time of one sync cycle of an EGPSource.",
            labels=SOURCE_LABELS,
        )
        last_success = GaugeMetricFamily(
            f"{PREFIX}_last_successful_sync_timestamp_seconds",
            "Unix time of the last sync cycle that completed.",
            labels=SOURCE_LABELS,
        )
        errors = CounterMetricFamily(
            f"{PREFIX}_sync_errors",
            "Sync cycles that failed, by reason (AuthenticationFailed, IncompleteListing, ...).",
            labels=(*SOURCE_LABELS, "reason"),
        )
        models = GaugeMetricFamily(
            f"{PREFIX}_models",
            "Mirrored models by phase and vendor, as of the last complete listing.",
            labels=(*SOURCE_LABELS, "phase", "vendor"),
        )
        refresh = GaugeMetricFamily(
            f"{PREFIX}_source_refresh_interval_seconds",
            "The EGPSource's refreshInterval, so alerts judge each source by its own; absent"
            " while it is suspended.",
            labels=SOURCE_LABELS,
        )
        transitions = CounterMetricFamily(
            f"{PREFIX}_model_phase_transitions",
            "Phase changes of the source's models, by the phase entered: a rate well above the"
            " deploys is flapping.",
            labels=(*SOURCE_LABELS, "phase"),
        )
        deploys = HistogramMetricFamily(
            f"{PREFIX}_model_deploy_duration_seconds",
            "From Deploying to the next Ready, Failed or DeploymentTimeout, by that outcome;"
            " known to within the source's refreshInterval.",
            labels=(*SOURCE_LABELS, "outcome"),
        )
        flapping = GaugeMetricFamily(
            f"{PREFIX}_models_flapping",
            "Models with a Flapping condition (they changed phase too often), as of the last"
            " complete listing.",
            labels=SOURCE_LABELS,
        )
        for (namespace, source), state in sources.items():
            for phase, count in state.transitions.items():
                transitions.add_metric((namespace, source, phase), count)
            for outcome, deployed in state.deploys.items():
                deploys.add_metric((namespace, source, outcome), deployed.buckets, deployed.total)
            if state.flapping is not None:
                flapping.add_metric((namespace, source), state.flapping)
            for code, count in state.egp_requests.items():
                requests.add_metric((namespace, source, code), count)
            duration.add_metric((namespace, source), state.duration.buckets, state.duration.total)
            if state.last_success is not None:
                last_success.add_metric((namespace, source), state.last_success)
            for reason, count in state.errors.items():
                errors.add_metric((namespace, source, reason), count)
            for (phase, vendor), count in state.models.items():
                models.add_metric((namespace, source, phase, vendor), count)
            if state.refresh_seconds is not None:
                refresh.add_metric((namespace, source), state.refresh_seconds)
        return [
            requests,
            duration,
            last_success,
            errors,
            models,
            refresh,
            transitions,
            deploys,
            flapping,
        ]


SOURCES: Final = SourceMetrics()
REGISTRY.register(SOURCES)

KUBE_REQUESTS = Counter(
    f"{PREFIX}_kubernetes_requests",
    "Requests to the Kubernetes API made by the sync cycles and the Secret watches (LIST, WATCH),"
    " by verb; not kopf's own.",
    ["verb"],
)
SECRETS_IN_USE = Gauge(
    f"{PREFIX}_secrets_in_use",
    "Secrets that sources read, by how: `watched` (from a watch that is up: no request),"
    " `down` (a watch starting or broken), `unwatched` (past the watch bound); the last two"
    " are read every cycle.",
    ["state"],
)

ALL: Final[tuple[Collector, ...]] = (SOURCES, KUBE_REQUESTS, SECRETS_IN_USE)


def exported_names() -> set[str]:
    """The sample names Prometheus sees: counters get `_total`, histograms `_bucket` ..."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    return {
        family.name + suffix
        for metric in ALL
        for family in metric.collect()
        for suffix in suffixes[family.type]
    }


def vendor_label(vendor: str) -> str:
    """A vendor EGP documents, `""` for none, else `other`."""
    return vendor if not vendor or vendor in KNOWN_VENDORS else OTHER_VENDOR


def code_label(code: str) -> str:
    """An HTTP status code worth its own series, else its class (`4xx`), or as given for
    `transport_error`."""
    if code in KNOWN_CODES or not code.isdigit():
        return code
    return f"{code[:1]}xx" if len(code) == 3 else "other"


#: The collector's own methods, by the names the cycles and the daemon use.
record_cycle: Final = SOURCES.record_cycle
forget_refresh_interval: Final = SOURCES.forget_refresh_interval
forget_source: Final = SOURCES.forget


def count_secrets_in_use(counts: Callable[[], Mapping[str, int]]) -> None:
    """Read the Secrets-in-use gauge from `counts` at each scrape (the operator's watches)."""

    def reader(state: str) -> Callable[[], float]:
        return lambda: counts().get(state, 0)

    for state in ("watched", "down", "unwatched"):
        SECRETS_IN_USE.labels(state).set_function(reader(state))
