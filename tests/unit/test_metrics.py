"""The model gauges follow each source's own models: a (phase, vendor) pair that is gone drops
to absent, and no source's cycle touches another source's series."""

from __future__ import annotations

import uuid

from prometheus_client import REGISTRY, generate_latest

from egp_operator import metrics

MODELS = "egp_operator_models"


def model_series(namespace: str) -> dict[tuple[str, str, str], float]:
    return {
        (sample.labels["source"], sample.labels["phase"], sample.labels["vendor"]): sample.value
        for family in REGISTRY.collect()
        if family.name == MODELS
        for sample in family.samples
        if sample.labels["namespace"] == namespace
    }


def test_a_phase_no_model_has_any_more_drops_to_absent() -> None:
    namespace = f"ns-{uuid.uuid4().hex[:6]}"
    metrics.set_model_counts(namespace, "src", {("Ready", "openai"): 2, ("Failed", "openai"): 1})

    metrics.set_model_counts(namespace, "src", {("Ready", "openai"): 3})

    assert model_series(namespace) == {("src", "Ready", "openai"): 3}


def test_a_cycle_leaves_the_series_of_other_sources_alone() -> None:
    namespace = f"ns-{uuid.uuid4().hex[:6]}"
    metrics.set_model_counts(namespace, "a", {("Failed", "openai"): 1})
    metrics.set_model_counts(namespace, "b", {("Failed", "openai"): 4})

    metrics.set_model_counts(namespace, "a", {})

    assert model_series(namespace) == {("b", "Failed", "openai"): 4}


def test_unknown_vendors_share_one_series() -> None:
    namespace = f"ns-{uuid.uuid4().hex[:6]}"

    metrics.set_model_counts(namespace, "src", {("Ready", "vendor-x"): 1, ("Ready", "vendor-y"): 2})

    assert model_series(namespace) == {("src", "Ready", "other"): 3}


def test_a_deleted_source_leaves_no_series_and_can_come_back() -> None:
    namespace = f"ns-{uuid.uuid4().hex[:6]}"
    metrics.set_model_counts(namespace, "src", {("Ready", "openai"): 1})

    metrics.forget_source(namespace, "src")
    assert model_series(namespace) == {}

    metrics.set_model_counts(namespace, "src", {("Deploying", "openai"): 1})
    assert model_series(namespace) == {("src", "Deploying", "openai"): 1}


def test_a_scrape_holds_no_created_series() -> None:
    namespace = f"ns-{uuid.uuid4().hex[:6]}"
    metrics.SYNC_DURATION.labels(namespace, "src").observe(0.2)
    metrics.SYNC_ERRORS.labels(namespace, "src", "InternalError").inc()

    scraped = generate_latest(REGISTRY).decode()

    assert f'egp_operator_sync_duration_seconds_count{{namespace="{namespace}"' in scraped
    assert "_created" not in scraped
