"""Every Prometheus metric the operator exports, in one place (names: `egp_operator_*`).

Alerting rules in deploy/monitoring/ may use only these names; a test checks that. They are
served by metrics_server.py.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Callable, Mapping
from typing import Final

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

from egp_operator.egp.models import MODEL_VENDORS
from egp_operator.resources.models import Phase

#: A `_created` series beside every counter and histogram of every source would be read by
#: nothing here, and would make each scrape 10% bigger (2,000 lines at 1,000 sources).
disable_created_metrics()  # type: ignore[no-untyped-call]

PREFIX: Final = "egp_operator"
#: Label values that come from upstream are drawn from these sets, so a hostile endpoint
#: cannot make series without end: any other vendor is `other`, any other code its class.
KNOWN_VENDORS: Final = frozenset(MODEL_VENDORS)
OTHER_VENDOR: Final = "other"
KNOWN_CODES: Final = frozenset(
    {"200", "400", "401", "403", "404", "408", "409", "422", "429", "500", "502", "503", "504"}
)

EGP_REQUESTS = Counter(
    f"{PREFIX}_egp_requests",
    "Requests sent to EGP, by HTTP status code (or transport_error).",
    ["namespace", "source", "code"],
)
SYNC_DURATION = Histogram(
    f"{PREFIX}_sync_duration_seconds",
    "Wall time of one sync cycle of an EGPSource.",
    ["namespace", "source"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
LAST_SUCCESSFUL_SYNC = Gauge(
    f"{PREFIX}_last_successful_sync_timestamp_seconds",
    "Unix time of the last sync cycle that completed.",
    ["namespace", "source"],
)
SYNC_ERRORS = Counter(
    f"{PREFIX}_sync_errors",
    "Sync cycles that failed, by reason (AuthenticationFailed, IncompleteListing, ...).",
    ["namespace", "source", "reason"],
)
MODELS = Gauge(
    f"{PREFIX}_models",
    "Mirrored models by phase and vendor, as of the last complete listing.",
    ["namespace", "source", "phase", "vendor"],
)
REFRESH_INTERVAL = Gauge(
    f"{PREFIX}_source_refresh_interval_seconds",
    "The EGPSource's refreshInterval, so alerts judge each source by its own; absent while"
    " it is suspended.",
    ["namespace", "source"],
)
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

ALL: Final = (
    EGP_REQUESTS,
    SYNC_DURATION,
    LAST_SUCCESSFUL_SYNC,
    SYNC_ERRORS,
    MODELS,
    REFRESH_INTERVAL,
    KUBE_REQUESTS,
    SECRETS_IN_USE,
)


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


def record_egp_answers(namespace: str, source: str, answers: Mapping[str, int]) -> None:
    for code, count in answers.items():
        EGP_REQUESTS.labels(namespace, source, code_label(code)).inc(count)


#: The (phase, vendor) series each source's model gauges have now, so that a cycle replaces its
#: own without scanning every source's (a scan per cycle grows with the number of sources).
_MODEL_SERIES: dict[tuple[str, str], frozenset[tuple[str, str]]] = {}


def set_model_counts(namespace: str, source: str, counts: Mapping[tuple[Phase, str], int]) -> None:
    """Replace the source's model gauges, so vanished (phase, vendor) pairs drop to absent."""
    bounded: collections.Counter[tuple[str, str]] = collections.Counter()
    for (phase, vendor), count in counts.items():
        bounded[phase, vendor_label(vendor)] += count
    current = frozenset(bounded)
    for gone in _MODEL_SERIES.get((namespace, source), frozenset()) - current:
        with contextlib.suppress(KeyError):
            MODELS.remove(namespace, source, *gone)
    for series, count in bounded.items():
        MODELS.labels(namespace, source, *series).set(count)
    _MODEL_SERIES[namespace, source] = current


def forget_refresh_interval(namespace: str, source: str) -> None:
    """No sync is due (the source is suspended): nothing to alert on its lateness."""
    with contextlib.suppress(KeyError):
        REFRESH_INTERVAL.remove(namespace, source)


def forget_source(namespace: str, source: str) -> None:
    """Drop a deleted source's series."""
    _MODEL_SERIES.pop((namespace, source), None)
    for metric in (
        MODELS,
        LAST_SUCCESSFUL_SYNC,
        SYNC_DURATION,
        EGP_REQUESTS,
        SYNC_ERRORS,
        REFRESH_INTERVAL,
    ):
        for labels in list(metric._metrics):
            if labels[:2] == (namespace, source):
                metric.remove(*labels)


def count_secrets_in_use(counts: Callable[[], Mapping[str, int]]) -> None:
    """Read the Secrets-in-use gauge from `counts` at each scrape (the operator's watches)."""

    def reader(state: str) -> Callable[[], float]:
        return lambda: counts().get(state, 0)

    for state in ("watched", "down", "unwatched"):
        SECRETS_IN_USE.labels(state).set_function(reader(state))
