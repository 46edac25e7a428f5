"""What kstatus (Flux's health checks, kpt, the cli-utils applier's wait) concludes about our
objects, asked of the real library (tools/kstatus) about real objects of the local control
plane: judged one by one as Flux's health checks judge them, and watched until done as the
cli-utils applier's wait watches what it applied."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from egp_testbench.cluster import LocalControlPlane
from egp_testbench.fake_egp import FakeEGPServer, Fault, generate_models
from tests.e2e.harness import EGP_ACCOUNT, ONE_CYCLE, Mirror, start_source, wait_mirrored
from tests.e2e.polling import eventually

pytestmark = pytest.mark.usefixtures("operator")

REASON = "Container exited with code 137 (OOMKilled)"


def judged(kstatus: Path, objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """kstatus' verdict on each object, by name."""
    answer = subprocess.run(
        [str(kstatus)], input=json.dumps(objects), capture_output=True, text=True, check=True
    )
    return {line["name"]: line for line in map(json.loads, answer.stdout.splitlines())}


def test_models_read_current_in_progress_or_failed_with_the_upstream_reason(
    kstatus: Path, egp: FakeEGPServer, mirror: Mirror
) -> None:
    upstream = generate_models(4, seed=61)
    for model, status in zip(
        upstream, ("ready", "deploying", "failed", "deployment_timeout"), strict=True
    ):
        model |= {"status": status, "status_reason": None if status == "ready" else REASON}
    egp.add_models(upstream)
    start_source(mirror, egp)
    mirrored = wait_mirrored(mirror, 4)

    verdicts = judged(kstatus, list(mirrored.values()))

    by_status = {
        model["status"]: verdicts[mirrored[model["id"]]["metadata"]["name"]] for model in upstream
    }
    assert by_status["ready"]["status"] == "Current"
    assert by_status["deploying"]["status"] == "InProgress"
    for failed in ("failed", "deployment_timeout"):
        assert by_status[failed]["status"] == "Failed"
        assert by_status[failed]["message"] == REASON


def test_a_source_reads_in_progress_until_synced_then_current(
    kstatus: Path, egp: FakeEGPServer, mirror: Mirror
) -> None:
    egp.add_models(generate_models(2, seed=62))
    egp.inject(Fault(delay=2.5, times=1))  # a first cycle slow enough to be seen

    start_source(mirror, egp)

    eventually(
        lambda: judged(kstatus, [mirror.source("src")])["src"]["status"] == "InProgress",
        timeout=ONE_CYCLE,
        what="kstatus InProgress while the first cycle runs",
    )
    eventually(
        lambda: judged(kstatus, [mirror.source("src")])["src"]["status"] == "Current",
        timeout=ONE_CYCLE,
        what="kstatus Current once synced",
    )


def test_a_source_whose_credentials_are_rejected_reads_failed(
    kstatus: Path, egp: FakeEGPServer, mirror: Mirror
) -> None:
    mirror.create_secret("src-credentials", "sk-revoked-00000000")
    mirror.create_source("src", egp.url, accountID=EGP_ACCOUNT)

    verdict = eventually(
        lambda: (v := judged(kstatus, [mirror.source("src")])["src"])["status"] == "Failed" and v,
        timeout=ONE_CYCLE,
        what="kstatus Failed for rejected credentials",
    )

    assert "401" in verdict["message"]


WAIT_CURRENT, WAIT_FAILED, WAIT_TIMED_OUT = 0, 1, 3  # kstatus wait's exit statuses


def applier_wait(
    kstatus: Path, kubeconfig: Path, *objects: tuple[str, str, str], timeout: str = "90s"
) -> tuple[int, list[dict[str, Any]]]:
    """The applier's wait on (kind, namespace, name) objects: its exit status and every status
    the watcher reported."""
    ids = [f"egp-operator.io/{kind}/{namespace}/{name}" for kind, namespace, name in objects]
    answer = subprocess.run(
        [str(kstatus), "wait", "--kubeconfig", str(kubeconfig), "--timeout", timeout, *ids],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert answer.returncode in (WAIT_CURRENT, WAIT_FAILED, WAIT_TIMED_OUT), answer.stderr
    return answer.returncode, [json.loads(line) for line in answer.stdout.splitlines()]


def test_the_applier_wait_ends_when_a_new_source_is_synced(
    kstatus: Path, egp: FakeEGPServer, mirror: Mirror, control_plane: LocalControlPlane
) -> None:
    egp.add_models(generate_models(2, seed=63))
    egp.inject(Fault(delay=2.5, times=1))  # a first cycle slow enough to be waited on

    start_source(mirror, egp)
    source = ("EGPSource", mirror.namespace, "src")
    code, seen = applier_wait(kstatus, control_plane.kubeconfig, source)

    assert code == WAIT_CURRENT
    assert seen[0]["status"] == "InProgress"
    assert seen[-1]["status"] == "Current"
    assert mirror.source_condition("src", "Synced")["status"] == "True"


def test_the_applier_wait_fails_fast_on_rejected_credentials_and_failed_models(
    kstatus: Path, egp: FakeEGPServer, mirror: Mirror, control_plane: LocalControlPlane
) -> None:
    upstream = generate_models(3, seed=64)
    for model, status in zip(upstream, ("ready", "failed", "deploying"), strict=True):
        model |= {"status": status, "status_reason": None if status == "ready" else REASON}
    egp.add_models(upstream)
    start_source(mirror, egp)
    mirrored = wait_mirrored(mirror, 3)
    ready, failed, deploying = (
        ("EGPModel", mirror.namespace, mirrored[model["id"]]["metadata"]["name"])
        for model in upstream
    )
    mirror.create_secret("revoked-credentials", "sk-revoked-33333333")
    mirror.create_source("revoked", egp.url, accountID=EGP_ACCOUNT)
    kubeconfig = control_plane.kubeconfig

    revoked = ("EGPSource", mirror.namespace, "revoked")
    source_code, source_seen = applier_wait(kstatus, kubeconfig, revoked)
    assert source_code == WAIT_FAILED  # long before its 90 s timeout: Stalled
    assert "401" in source_seen[-1]["message"]

    assert applier_wait(kstatus, kubeconfig, ready)[0] == WAIT_CURRENT
    failed_code, failed_seen = applier_wait(kstatus, kubeconfig, ready, failed)
    assert failed_code == WAIT_FAILED
    assert failed_seen[-1]["message"] == REASON
    assert applier_wait(kstatus, kubeconfig, deploying, timeout="3s")[0] == WAIT_TIMED_OUT
