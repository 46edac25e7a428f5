"""What kstatus (Flux's health checks, kpt, the cli-utils applier's wait) concludes about our
objects, asked of the real library (tools/kstatus) about real objects of the local control
plane."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from egp_operator.testing.fake_egp import FakeEGPServer, Fault, generate_models
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
