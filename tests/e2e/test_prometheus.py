"""A real Prometheus (Debian's package) scraping the running operator and evaluating the shipped
rules: every alert fires on the real fault it is for, with the source's own labels, and none
fires for a healthy source, including one that refreshes every 10 minutes. The same Prometheus
runs every query of the shipped Grafana dashboard.

Time is compressed in the test copy of the rules only: every `for:` becomes a few seconds, and
the three-minute floor of EGPSourceNotSynced becomes 20 s, below three of the shortest interval
(30 s), so that each source is judged by its own interval within a test's patience. The
promtool tests (test_alert_rules.py) check the production durations.

Prometheus scrapes as the shipped ServiceMonitor has it do: with the bearer token of its own
ServiceAccount (minted by the TokenRequest API, as the kubelet mounts it), bound to the shipped
ClusterRole egp-operator-metrics-reader; a second job without a token is refused.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from egp_testbench.cluster import LocalControlPlane
from egp_testbench.fake_egp import FakeEGPServer, Fault, generate_models
from egp_testbench.operator_process import OperatorProcess
from tests.e2e.harness import (
    EGP_ACCOUNT,
    EGP_KEY,
    Mirror,
    metrics_reader_token,
    running_operator,
    running_prometheus,
    start_source,
    sync_now,
    wait_mirrored,
)
from tests.e2e.polling import eventually
from tests.unit.test_deploy import dashboard_queries, dashboard_variables

RULES = Path(__file__).parents[2] / "deploy" / "monitoring" / "prometheusrule.yaml"
PRODUCTION_FLOOR = "180"  # EGPSourceNotSynced: never less than three minutes in production
COMPRESSED_FLOOR = "20"
COMPRESSED_FOR = "3s"
SLOW_UPSTREAM = 11.0  # seconds each answer of the slow EGP takes: more than a 10 s interval


@pytest.fixture(scope="module")
def operator(
    control_plane: LocalControlPlane, peering: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """One replica as in production, whose failing sources retry every 5 s at most (so that
    error rates show within seconds) and whose EGP timeout outlasts the slow upstream."""
    with running_operator(
        control_plane.kubeconfig,
        tmp_path_factory.mktemp("operator") / "operator.log",
        egp_timeout_seconds=str(SLOW_UPSTREAM + 10),
        egp_max_retries="1",
        error_backoff_max_seconds="5",
    ) as replica:
        yield replica


def compressed_rules() -> dict[str, Any]:
    """The shipped rule groups, with `for:` and the not-synced floor shortened."""
    groups = yaml.safe_load(RULES.read_text())["spec"]["groups"]
    floors = 0
    for group in groups:
        for rule in group["rules"]:
            rule["for"] = COMPRESSED_FOR
            if rule["alert"] == "EGPSourceNotSynced":
                floors = rule["expr"].count(f", {PRODUCTION_FLOOR})")
                rule["expr"] = rule["expr"].replace(
                    f", {PRODUCTION_FLOOR})", f", {COMPRESSED_FLOOR})"
                )
    assert floors == 1, "EGPSourceNotSynced's floor moved: update the test's time compression"
    return {"groups": groups}


@pytest.fixture(scope="module")
def prometheus_token(control_plane: LocalControlPlane) -> str:
    """The token of Prometheus's ServiceAccount, bound to egp-operator-metrics-reader."""
    return metrics_reader_token(
        control_plane, "e2e-monitoring", f"prometheus-{uuid.uuid4().hex[:6]}"
    )


@pytest.fixture
def prometheus(
    prometheus_bin_dir: Path, operator: OperatorProcess, prometheus_token: str, tmp_path: Path
) -> Iterator[str]:
    """A Prometheus scraping the operator every second, as the shipped ServiceMonitor does
    (honor_labels, under the operator's own namespace, with its ServiceAccount's token from a
    file, as `bearerTokenFile` has it); and once more as job `anonymous`, without a token.
    Yields its base URL."""
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(compressed_rules()))
    token_file = tmp_path / "token"
    token_file.write_text(prometheus_token)
    token_file.chmod(0o600)
    target = {
        "targets": [f"127.0.0.1:{operator.metrics_port}"],
        "labels": {"namespace": "egp-operator-system"},
    }
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["rules.yaml"],
        "scrape_configs": [
            {
                "job_name": "egp-operator",
                "honor_labels": True,
                "authorization": {"type": "Bearer", "credentials_file": str(token_file)},
                "static_configs": [target],
            },
            {"job_name": "anonymous", "honor_labels": True, "static_configs": [target]},
        ],
    }
    with running_prometheus(prometheus_bin_dir, config, tmp_path) as url:
        yield url


def ready_models(count: int, seed: int) -> list[dict[str, Any]]:
    return [model | {"status": "ready"} for model in generate_models(count, seed=seed)]


def deploying_model(seed: int) -> dict[str, Any]:
    """A model EGP began deploying a few seconds ago."""
    (model,) = generate_models(1, seed=seed)
    created = datetime.now(UTC) - timedelta(seconds=5)
    return model | {"status": "deploying", "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ")}


def firing(prometheus: str, namespace: str) -> set[tuple[str, ...]]:
    """(alert, source, and the alert's own distinguishing label) of each alert firing for
    sources of `namespace`."""
    alerts = httpx.get(f"{prometheus}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    return {
        (
            alert["labels"]["alertname"],
            alert["labels"]["source"],
            *(
                f"{key}={alert['labels'][key]}"
                for key in ("phase", "reason", "code")
                if key in alert["labels"]
            ),
        )
        for alert in alerts
        if alert["state"] == "firing" and alert["labels"].get("namespace") == namespace
    }


def test_each_alert_fires_on_its_fault_and_none_on_healthy_sources(
    prometheus: str, mirror: Mirror, namespace: str
) -> None:
    with (
        FakeEGPServer(api_key=EGP_KEY, account_id=EGP_ACCOUNT) as healthy,
        FakeEGPServer(api_key=EGP_KEY, account_id=EGP_ACCOUNT) as unhealthy_models,
        FakeEGPServer(api_key=EGP_KEY, account_id=EGP_ACCOUNT) as outage,
        FakeEGPServer(api_key=EGP_KEY, account_id=EGP_ACCOUNT) as slow,
    ):
        healthy.add_models(ready_models(3, seed=81))
        models = ready_models(3, seed=82)
        models[1]["status"], models[2]["status"] = "failed", "deploying"
        unhealthy_models.add_models(models)
        outage.add_models(ready_models(2, seed=83))
        slow.add_models(ready_models(1, seed=84))
        slow.inject(Fault(endpoint="any", delay=SLOW_UPSTREAM))

        start_source(mirror, healthy, "steady")
        start_source(mirror, healthy, "hourly", refreshInterval="10m")
        start_source(mirror, unhealthy_models, "failing-models")
        start_source(mirror, outage, "outage")
        mirror.create_secret("revoked-credentials", "sk-revoked-000000")
        mirror.create_source("revoked", healthy.url, accountID=EGP_ACCOUNT)
        start_source(mirror, slow, "sluggish")
        eventually(
            lambda: len(mirror.models()) == 3 + 3 + 3 + 2 + 1,  # "steady" and "hourly" both
            timeout=60,
            what="every source but the revoked one mirrored",
        )
        outage.inject(Fault(endpoint="any", status=503))

        expected = {
            ("EGPModelFailed", "failing-models", "phase=Failed"),
            ("EGPModelStuckDeploying", "failing-models"),
            ("EGPSourceCredentialsRejected", "revoked", "reason=AuthenticationFailed"),
            ("EGPSourceNeverSynced", "revoked"),
            ("EGPSyncErrors", "revoked", "reason=AuthenticationFailed"),
            ("EGPSourceNotSynced", "outage"),
            ("EGPSyncErrors", "outage", "reason=ServerError"),
            ("EGPAPIErrors", "outage", "code=503"),
            ("EGPSyncSlow", "sluggish"),
        }
        # The healthy sources ("steady", and "hourly", whose last sync is older than three
        # of "steady"'s intervals by now) are judged at the moment the slowest fault fires.
        seen = eventually(
            lambda: (alerts := firing(prometheus, namespace)) >= expected and alerts,
            timeout=150,
            interval=1,
            what=f"alerts {sorted(expected)} to fire",
        )
        assert seen == expected


def test_a_deploy_is_timed_and_a_flapping_model_fires_and_a_steady_one_does_not(
    prometheus: str, mirror: Mirror, namespace: str
) -> None:
    """A deploy (Deploying, then Ready) is observed, with its duration, as an outcome of the
    source's deploy histogram; a model flipped ready/failed four times flaps, and
    EGPModelFlapping fires for its source and not for the source whose model only deployed."""
    with (
        FakeEGPServer(api_key=EGP_KEY, account_id=EGP_ACCOUNT) as deploys,
        FakeEGPServer(api_key=EGP_KEY, account_id=EGP_ACCOUNT) as flaky,
    ):
        deploy = deploying_model(seed=87)
        deploys.add_models([deploy, *ready_models(2, seed=88)])
        flipping = ready_models(2, seed=89)
        flaky.add_models(flipping)
        start_source(mirror, deploys, "deploys")
        start_source(mirror, flaky, "flaky")
        wait_mirrored(mirror, 5)

        deploys.update_model(deploy["id"], status="ready")
        sync_now(mirror, "deploys")  # the deploy's end is seen now: well within a minute
        # Four phase changes, each seen by its own cycle (cycles of a source start 10 s apart
        # at the closest): Ready -> Failed -> Ready -> Failed -> Ready.
        for status in ("failed", "ready", "failed", "ready"):
            flaky.update_model(flipping[0]["id"], status=status)
            sync_now(mirror, "flaky")

        # The deploy took seconds (from its upstream created_at to the cycle that saw it
        # Ready): counted once, as a Ready outcome, in the first bucket (up to a minute).
        ours = f'namespace="{namespace}",source="deploys",outcome="Ready"'
        eventually(
            lambda: query(
                prometheus, f"egp_operator_model_deploy_duration_seconds_count{{{ours}}}"
            ),
            timeout=30,
            interval=1,
            what="Prometheus to scrape the deploy's duration",
        )
        buckets = {
            float(s["metric"]["le"]): float(s["value"][1])
            for s in query(
                prometheus, f"egp_operator_model_deploy_duration_seconds_bucket{{{ours}}}"
            )
        }
        assert buckets[60] == buckets[math.inf] == 1, buckets

        def flapping_alerts() -> set[str]:
            alerts = firing(prometheus, namespace)
            return {source for name, source, *_ in alerts if name == "EGPModelFlapping"}

        assert eventually(
            flapping_alerts, timeout=30, interval=1, what="EGPModelFlapping to fire for flaky"
        ) == {"flaky"}
        # The steady source is judged, not merely absent: its gauge is there, at 0.
        gauge = query(prometheus, f'egp_operator_models_flapping{{namespace="{namespace}"}}')
        assert {s["metric"]["source"]: s["value"][1] for s in gauge} == {
            "deploys": "0",
            "flaky": "1",
        }
        flapping = next(
            c
            for c in mirror.by_model_id()[flipping[0]["id"]]["status"]["conditions"]
            if c["type"] == "Flapping"
        )
        assert (flapping["status"], flapping["reason"]) == ("True", "PhaseFlapping")


def query(prometheus: str, expr: str) -> list[Any]:
    """The instant result of `expr`; Prometheus refusing it fails the test."""
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=5)
    assert answer.status_code == 200, (expr, answer.text)
    result: list[Any] = answer.json()["data"]["result"]
    return result


def test_every_dashboard_query_runs_and_finds_the_operators_series(
    prometheus: str, egp: FakeEGPServer, mirror: Mirror
) -> None:
    egp.add_models(generate_models(3, seed=85))
    # And a deploy that ends, so that the deploy panels have data too.
    deploy = deploying_model(seed=86)
    egp.add_models([deploy])
    start_source(mirror, egp)
    wait_mirrored(mirror, 4)
    egp.update_model(deploy["id"], status="ready")
    sync_now(mirror)
    mirror.create_secret("revoked-credentials", "sk-revoked-000000")
    mirror.create_source("revoked", egp.url, accountID=EGP_ACCOUNT)
    # As Grafana sends them with "All" selected, over a short range.
    queries = [
        expr.replace("$namespace", ".*").replace("$source", ".*").replace("$__rate_interval", "1m")
        for expr in dashboard_queries()
    ]
    ours = [expr for expr in queries if "kube_egp" not in expr]

    def every_query_finds_series() -> bool:
        return all(query(prometheus, expr) for expr in ours)

    eventually(every_query_finds_series, timeout=60, interval=1, what="every panel to have data")
    expected_value = {"namespace": mirror.namespace, "source": "src"}
    for variable, (selector, label) in dashboard_variables().items():
        values = httpx.get(
            f"{prometheus}/api/v1/label/{label}/values",
            params={"match[]": selector.replace("$namespace", mirror.namespace)},
            timeout=5,
        ).json()["data"]
        assert expected_value[variable] in values, (variable, values)
    # The per-model panels read kube-state-metrics (tests/e2e/test_kube_state_metrics.py);
    # here Prometheus must at least accept them.
    for expr in queries:
        query(prometheus, expr)


def test_prometheus_scrapes_with_its_token_and_is_refused_without(prometheus: str) -> None:
    """What the shipped ServiceMonitor's `bearerTokenFile` does; and `up` is 0 for a scraper
    without a token, the operator answering 401."""

    def targets() -> dict[str, dict[str, Any]] | None:
        answer = httpx.get(f"{prometheus}/api/v1/targets", timeout=5).json()
        found = {t["labels"]["job"]: t for t in answer["data"]["activeTargets"]}
        scraped = all(t["health"] in ("up", "down") for t in found.values())
        return found if len(found) == 2 and scraped else None

    found = eventually(targets, timeout=30, interval=1, what="both jobs scraped once")
    assert found["egp-operator"]["health"] == "up", found["egp-operator"]["lastError"]
    assert found["anonymous"]["health"] == "down"
    assert "401" in found["anonymous"]["lastError"]
    assert query(prometheus, 'up{job="egp-operator"} == 1')
    assert query(prometheus, 'up{job="anonymous"} == 0')
