"""The shipped alert rules, evaluated by the real Prometheus rule engine (`promtool test rules`,
from Debian's prometheus package, which tools/prometheus/install.sh unpacks): each alert fires
on the fault it is for, and stays silent on a healthy mirror, for every source's own interval.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).parents[2]
RULES = REPO / "deploy" / "monitoring" / "prometheusrule.yaml"
S = 'namespace="ml",source="prod"'  # one source's labels, in series notation
SEVERITY = {
    rule["alert"]: rule["labels"]["severity"]
    for group in yaml.safe_load(RULES.read_text())["spec"]["groups"]
    for rule in group["rules"]
}


@pytest.fixture(scope="module")
def promtool(prometheus_bin_dir: Path) -> Path:
    return prometheus_bin_dir / "promtool"


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    extra = "".join(f',{key}="{value}"' for key, value in labels.items())
    return {"series": f"{name}{{{S}{extra}}}", "values": values}


def fires(alert: str, at: str, **labels: str) -> dict[str, Any]:
    return {
        "eval_time": at,
        "alertname": alert,
        "exp_alerts": [
            {
                "exp_labels": {
                    "namespace": "ml",
                    "source": "prod",
                    "severity": SEVERITY[alert],
                    **labels,
                }
            }
        ],
    }


def silent(alert: str, at: str) -> dict[str, Any]:
    return {"eval_time": at, "alertname": alert, "exp_alerts": []}


def run(promtool: Path, tmp_path: Path, inputs: list[dict[str, str]], tests: list[Any]) -> None:
    """Evaluate the shipped rules on `inputs` (one sample a minute) and check `tests`."""
    groups = yaml.safe_load(RULES.read_text())["spec"]["groups"]
    for group in groups:
        for rule in group["rules"]:
            # promtool compares annotations too; what is tested here is when rules fire.
            rule.pop("annotations", None)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    cases = {"interval": "1m", "input_series": inputs, "alert_rule_test": tests}
    (tmp_path / "test.yaml").write_text(
        yaml.safe_dump({"rule_files": ["rules.yaml"], "tests": [cases]})
    )
    answer = subprocess.run(
        [str(promtool), "test", "rules", "test.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert answer.returncode == 0, answer.stdout + answer.stderr


def synced_every(seconds: int, minutes: int) -> str:
    """`last_successful_sync` samples, one a minute, of a source that syncs every `seconds`."""
    return " ".join(str((m * 60 // seconds) * seconds) for m in range(minutes + 1))


def test_a_failed_model_and_a_stuck_deployment_fire_after_ten_minutes(
    promtool: Path, tmp_path: Path
) -> None:
    run(
        promtool,
        tmp_path,
        [
            series("egp_operator_models", "1x30", phase="Failed", vendor="launch"),
            series("egp_operator_models", "0x30", phase="DeploymentTimeout", vendor="launch"),
            series("egp_operator_models", "2x30", phase="Deploying", vendor="openai"),
            series("egp_operator_models", "5x30", phase="Ready", vendor="openai"),
        ],
        [
            silent("EGPModelFailed", "5m"),
            fires("EGPModelFailed", "15m", phase="Failed"),
            silent("EGPModelStuckDeploying", "5m"),
            fires("EGPModelStuckDeploying", "15m"),
        ],
    )


def test_a_flapping_model_fires_after_five_minutes_and_stops_when_it_settles(
    promtool: Path, tmp_path: Path
) -> None:
    # A model of the source has a Flapping condition from minute 5 to minute 30.
    run(
        promtool,
        tmp_path,
        [
            series("egp_operator_models_flapping", "0x4 1x25 0x20"),
            series("egp_operator_model_phase_transitions_total", "0x4 4+1x25 29x20", phase="Ready"),
            series("egp_operator_models", "5x50", phase="Ready", vendor="openai"),
        ],
        [
            silent("EGPModelFlapping", "4m"),
            silent("EGPModelFlapping", "8m"),
            fires("EGPModelFlapping", "11m"),
            fires("EGPModelFlapping", "29m"),
            silent("EGPModelFlapping", "31m"),
        ],
    )


def test_a_healthy_mirror_fires_nothing(promtool: Path, tmp_path: Path) -> None:
    # Models change phase at a normal pace: a new one deploys (Deploying from minute 5, Ready
    # at minute 12), then a Ready one redeploys (Deploying from minute 20, Ready at 23).
    ready, deploying = "5x4 5x6 6x7 5x2 6x20", "0x4 1x6 0x7 1x2 0x20"
    changes, deploys = "egp_operator_model_phase_transitions_total", "0x11 1x10 2x20"
    run(
        promtool,
        tmp_path,
        [
            series("egp_operator_models", ready, phase="Ready", vendor="openai"),
            series("egp_operator_models", deploying, phase="Deploying", vendor="openai"),
            series(changes, "0x4 1x14 2x20", phase="Deploying"),
            series(changes, deploys, phase="Ready"),
            series("egp_operator_model_deploy_duration_seconds_count", deploys, outcome="Ready"),
            series("egp_operator_models_flapping", "0x40"),
            series("egp_operator_last_successful_sync_timestamp_seconds", synced_every(60, 40)),
            series("egp_operator_source_refresh_interval_seconds", "60x40"),
            series("egp_operator_sync_errors_total", "0x40", reason="ServerError"),
            series("egp_operator_egp_requests_total", "0+20x40", code="200"),
        ],
        [
            silent(alert, at)
            for alert in (
                "EGPModelFailed",
                "EGPModelStuckDeploying",
                "EGPModelFlapping",
                "EGPSourceNotSynced",
                "EGPSourceNeverSynced",
                "EGPSourceCredentialsRejected",
                "EGPSyncErrors",
                "EGPAPIErrors",
            )
            for at in ("12m", "25m", "40m")
        ],
    )


def test_not_synced_is_judged_by_each_sources_own_interval(promtool: Path, tmp_path: Path) -> None:
    # A source refreshing every 10 minutes, synced on time: silent at any point, where a fixed
    # three-minute threshold would fire between its syncs.
    run(
        promtool,
        tmp_path,
        [
            series("egp_operator_last_successful_sync_timestamp_seconds", synced_every(600, 60)),
            series("egp_operator_source_refresh_interval_seconds", "600x60"),
        ],
        [silent("EGPSourceNotSynced", at) for at in ("9m", "19m", "29m", "59m")],
    )


def test_a_source_that_stopped_syncing_fires_after_three_of_its_intervals(
    promtool: Path, tmp_path: Path
) -> None:
    # Syncs every minute until minute 10, then never again.
    last_sync = " ".join(str(min(m, 10) * 60) for m in range(31))
    run(
        promtool,
        tmp_path,
        [
            series("egp_operator_last_successful_sync_timestamp_seconds", last_sync),
            series("egp_operator_source_refresh_interval_seconds", "60x30"),
        ],
        [silent("EGPSourceNotSynced", "12m"), fires("EGPSourceNotSynced", "20m")],
    )


def test_a_suspended_source_is_not_judged(promtool: Path, tmp_path: Path) -> None:
    run(
        promtool,
        tmp_path,
        # Synced once, then suspended: the interval series is gone.
        [series("egp_operator_last_successful_sync_timestamp_seconds", "0x60")],
        [silent("EGPSourceNotSynced", "60m")],
    )


def test_failing_sources_fire_by_what_fails(promtool: Path, tmp_path: Path) -> None:
    run(
        promtool,
        tmp_path,
        [
            series("egp_operator_sync_errors_total", "0+1x40", reason="AuthenticationFailed"),
            series("egp_operator_egp_requests_total", "0+6x40", code="503"),
        ],
        [
            fires("EGPSourceNeverSynced", "20m"),
            fires("EGPSourceCredentialsRejected", "10m", reason="AuthenticationFailed"),
            fires("EGPSyncErrors", "20m", reason="AuthenticationFailed"),
            silent("EGPAPIErrors", "10m"),
            fires("EGPAPIErrors", "30m", code="503"),
        ],
    )


def test_cycles_slower_than_the_sources_interval_fire(promtool: Path, tmp_path: Path) -> None:
    def bucket(le: str, per_minute: int) -> dict[str, str]:
        return series("egp_operator_sync_duration_seconds_bucket", f"0+{per_minute}x70", le=le)

    # Every cycle takes between 30 and 60 s: slow for a 10 s interval, not for a 60 s one.
    inputs = [bucket("10", 0), bucket("30", 0), bucket("60", 1), bucket("+Inf", 1)]
    fast_source = [series("egp_operator_source_refresh_interval_seconds", "10x70")]
    run(promtool, tmp_path, [*inputs, *fast_source], [fires("EGPSyncSlow", "65m")])
    slow_source = [series("egp_operator_source_refresh_interval_seconds", "120x70")]
    run(promtool, tmp_path, [*inputs, *slow_source], [silent("EGPSyncSlow", "65m")])
