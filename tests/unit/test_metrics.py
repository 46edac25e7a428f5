"""The per-source series, as a scrape sees them: each follows its source's own cycles (a
(phase, vendor) pair that is gone drops to absent, a deleted source leaves nothing), no cycle
touches another source's series, upstream label values are bounded, and the names are those
the alert rules may use."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from prometheus_client import REGISTRY, generate_latest

from egp_operator import metrics

SOURCE_FAMILIES = {
    "egp_operator_egp_requests",
    "egp_operator_sync_duration_seconds",
    "egp_operator_last_successful_sync_timestamp_seconds",
    "egp_operator_sync_errors",
    "egp_operator_models",
    "egp_operator_source_refresh_interval_seconds",
    "egp_operator_model_phase_transitions",
    "egp_operator_model_deploy_duration_seconds",
    "egp_operator_models_flapping",
}


def new_namespace() -> str:
    return f"ns-{uuid.uuid4().hex[:6]}"


def cycle(namespace: str, source: str = "src", **overrides: Any) -> None:
    """A successful cycle with a bit of everything, unless `overrides` say otherwise."""
    arguments: dict[str, Any] = {
        "seconds": 0.2,
        "egp_answers": {"200": 1},
        "model_counts": {("Ready", "openai"): 1},
        "refresh_seconds": 300.0,
        "error_reason": None,
        "phase_changes": [("Ready", 600.0)],
        "flapping": 0,
        **overrides,
    }
    metrics.record_cycle(namespace, source, **arguments)


def series(namespace: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the namespace's sources: (name, labels other than namespace) -> value."""
    return {
        (
            sample.name,
            tuple(sorted((k, v) for k, v in sample.labels.items() if k != "namespace")),
        ): (sample.value)
        for family in REGISTRY.collect()
        for sample in family.samples
        if sample.labels.get("namespace") == namespace
    }


def model_series(namespace: str) -> dict[tuple[str, str, str], float]:
    return {
        (dict(labels)["source"], dict(labels)["phase"], dict(labels)["vendor"]): value
        for (name, labels), value in series(namespace).items()
        if name == "egp_operator_models"
    }


def value(name: str, namespace: str, source: str = "src", **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"namespace": namespace, "source": source, **labels})


def test_a_phase_no_model_has_any_more_drops_to_absent() -> None:
    namespace = new_namespace()
    cycle(namespace, model_counts={("Ready", "openai"): 2, ("Failed", "openai"): 1})

    cycle(namespace, model_counts={("Ready", "openai"): 3})

    assert model_series(namespace) == {("src", "Ready", "openai"): 3}


def test_a_cycle_without_a_complete_listing_keeps_the_last_listings_models() -> None:
    namespace = new_namespace()
    cycle(namespace, model_counts={("Ready", "openai"): 2})

    cycle(namespace, model_counts=None, error_reason="IncompleteListing")

    assert model_series(namespace) == {("src", "Ready", "openai"): 2}


def test_a_cycle_leaves_the_series_of_other_sources_alone() -> None:
    namespace = new_namespace()
    cycle(namespace, "a", model_counts={("Failed", "openai"): 1})
    cycle(namespace, "b", model_counts={("Failed", "openai"): 4})

    cycle(namespace, "a", model_counts={})

    assert model_series(namespace) == {("b", "Failed", "openai"): 4}


def test_unknown_vendors_and_codes_share_bounded_series() -> None:
    namespace = new_namespace()

    cycle(
        namespace,
        model_counts={("Ready", "vendor-x"): 1, ("Ready", "vendor-y"): 2, ("Ready", ""): 1},
        egp_answers={"200": 2, "418": 1, "451": 1, "transport_error": 1},
    )

    assert model_series(namespace) == {("src", "Ready", "other"): 3, ("src", "Ready", ""): 1}
    requests = "egp_operator_egp_requests_total"
    assert value(requests, namespace, code="200") == 2
    assert value(requests, namespace, code="4xx") == 2
    assert value(requests, namespace, code="transport_error") == 1
    assert value(requests, namespace, code="418") is None


def test_a_success_stamps_the_time_and_a_failure_counts_its_reason() -> None:
    namespace = new_namespace()
    before = time.time()
    cycle(namespace)
    stamped = value("egp_operator_last_successful_sync_timestamp_seconds", namespace)
    assert stamped is not None
    assert before <= stamped <= time.time()

    cycle(namespace, error_reason="AuthenticationFailed")
    cycle(namespace, error_reason="AuthenticationFailed")

    errors = "egp_operator_sync_errors_total"
    assert value(errors, namespace, reason="AuthenticationFailed") == 2
    assert value("egp_operator_last_successful_sync_timestamp_seconds", namespace) == stamped
    assert value("egp_operator_egp_requests_total", namespace, code="200") == 3


def test_the_duration_histogram_keeps_its_buckets() -> None:
    namespace = new_namespace()

    for seconds in (0.05, 0.3, 12.0, 400.0):
        cycle(namespace, seconds=seconds)

    histogram = "egp_operator_sync_duration_seconds"
    buckets = {
        dict(labels)["le"]: count
        for (name, labels), count in series(namespace).items()
        if name == f"{histogram}_bucket"
    }
    assert buckets == {
        **dict.fromkeys(("0.1", "0.25"), 1),
        **dict.fromkeys(("0.5", "1.0", "2.5", "5.0", "10.0"), 2),
        **dict.fromkeys(("30.0", "60.0", "120.0", "300.0"), 3),
        "+Inf": 4,
    }
    assert value(f"{histogram}_count", namespace) == 4
    assert value(f"{histogram}_sum", namespace) == 0.05 + 0.3 + 12.0 + 400.0


def test_the_refresh_interval_is_absent_while_suspended_and_kept_when_not_known() -> None:
    namespace = new_namespace()
    refresh = "egp_operator_source_refresh_interval_seconds"
    cycle(namespace, refresh_seconds=60.0)

    cycle(namespace, refresh_seconds=None, error_reason="InternalError")
    assert value(refresh, namespace) == 60

    metrics.forget_refresh_interval(namespace, "src")
    assert value(refresh, namespace) is None
    assert value("egp_operator_sync_duration_seconds_count", namespace) == 2

    metrics.forget_refresh_interval(namespace, "never-synced")
    assert value("egp_operator_sync_duration_seconds_count", namespace, "never-synced") is None


def test_a_deleted_source_leaves_no_series_and_can_come_back() -> None:
    namespace = new_namespace()
    cycle(namespace, "gone", error_reason="IncompleteListing", egp_answers={"503": 1})
    cycle(namespace, "gone")
    cycle(namespace, "kept")
    kept = {key: v for key, v in series(namespace).items() if ("source", "kept") in key[1]}
    assert {name for name, _ in series(namespace)} == {
        name for name in metrics.exported_names() if name.startswith(tuple(SOURCE_FAMILIES))
    }

    metrics.forget_source(namespace, "gone")

    assert series(namespace) == kept
    cycle(namespace, "gone", model_counts={("Deploying", "openai"): 1})
    assert model_series(namespace) == {
        ("gone", "Deploying", "openai"): 1,
        ("kept", "Ready", "openai"): 1,
    }
    assert value("egp_operator_sync_duration_seconds_count", namespace, "gone") == 1


def test_what_is_scraped_is_what_exported_names_says() -> None:
    cycle(new_namespace(), error_reason="IncompleteListing")
    cycle(new_namespace())
    metrics.KUBE_REQUESTS.labels("GET").inc(0)
    metrics.SECRETS_IN_USE.labels("watched")

    scraped = {
        sample.name
        for family in REGISTRY.collect()
        if family.name.startswith(metrics.PREFIX)
        for sample in family.samples
    }

    assert scraped == metrics.exported_names()


def test_a_scrape_holds_no_created_series() -> None:
    namespace = new_namespace()
    cycle(namespace, error_reason="InternalError")
    metrics.KUBE_REQUESTS.labels("GET").inc()

    scraped = generate_latest(REGISTRY).decode()

    assert f'egp_operator_sync_duration_seconds_count{{namespace="{namespace}"' in scraped
    assert "_created" not in scraped


def test_a_scrape_in_another_thread_sees_whole_cycles() -> None:
    """As metrics_server.py scrapes: off the thread that records the cycles."""
    namespace = new_namespace()
    done = threading.Event()
    failures: list[str] = []
    checked: list[int] = []

    def scrape() -> None:
        while not done.is_set():
            try:
                scraped = series(namespace)
                for (name, labels), count in scraped.items():
                    if name == "egp_operator_sync_duration_seconds_count":
                        requests = scraped[
                            "egp_operator_egp_requests_total", (("code", "200"), *labels)
                        ]
                        if requests != count:  # every cycle makes one request
                            failures.append(f"{labels}: {requests} requests in {count} cycles")
                        checked.append(1)
            except Exception as error:  # said by the test, not lost in the thread
                failures.append(repr(error))
                return

    scraper = threading.Thread(target=scrape)
    scraper.start()
    try:
        for round_ in range(300):
            for source in ("a", "b", "c"):
                cycle(namespace, source)
            if round_ % 7 == 0:
                metrics.forget_source(namespace, "b")
    finally:
        done.set()
        scraper.join()

    assert not failures
    assert checked


def test_deploys_are_timed_by_outcome_and_changes_counted_by_the_phase_entered() -> None:
    namespace = new_namespace()
    cycle(namespace, phase_changes=[("Ready", 90.0), ("Failed", 4000.0), ("Deploying", None)])
    cycle(namespace, phase_changes=[("Ready", 1500.0)])

    def deploys(suffix: str, outcome: str, **labels: str) -> float | None:
        return REGISTRY.get_sample_value(
            f"egp_operator_model_deploy_duration_seconds_{suffix}",
            {"namespace": namespace, "source": "src", "outcome": outcome, **labels},
        )

    assert deploys("count", "Ready") == 2
    assert deploys("sum", "Ready") == 1590.0
    assert deploys("bucket", "Ready", le="120.0") == 1
    assert deploys("bucket", "Ready", le="1800.0") == 2
    assert deploys("bucket", "Failed", le="3600.0") == 0
    assert deploys("bucket", "Failed", le="7200.0") == 1
    assert deploys("count", "Deploying") is None  # a change that ends no deploy is not timed
    changes = {
        phase: REGISTRY.get_sample_value(
            "egp_operator_model_phase_transitions_total",
            {"namespace": namespace, "source": "src", "phase": phase},
        )
        for phase in ("Ready", "Failed", "Deploying")
    }
    assert changes == {"Ready": 2, "Failed": 1, "Deploying": 1}


def test_the_flapping_gauge_follows_the_last_listing_and_a_failed_cycle_keeps_it() -> None:
    namespace = new_namespace()
    labels = {"namespace": namespace, "source": "src"}
    cycle(namespace, flapping=3)
    cycle(namespace, error_reason="IncompleteListing", flapping=None, model_counts=None)

    assert REGISTRY.get_sample_value("egp_operator_models_flapping", labels) == 3
    cycle(namespace, flapping=0)
    assert REGISTRY.get_sample_value("egp_operator_models_flapping", labels) == 0
