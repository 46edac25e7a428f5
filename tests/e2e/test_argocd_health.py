"""What Argo CD says about our objects: the health scripts of deploy/monitoring/argocd-health.yaml
run under gopher-lua as Argo CD runs them (tools/argocd-health), on real objects of every phase
from the local control plane."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from egp_operator.testing.fake_egp import FakeEGPServer, generate_models
from tests.e2e.harness import EGP_ACCOUNT, ONE_CYCLE, Mirror, start_source, wait_mirrored
from tests.e2e.polling import eventually

pytestmark = pytest.mark.usefixtures("operator")

HEALTH = Path(__file__).parents[2] / "deploy" / "monitoring" / "argocd-health.yaml"
REASON = "Container exited with code 137 (OOMKilled)"


def health(tool: Path, kind: str, objects: list[dict[str, Any]], tmp: Path) -> list[Any]:
    script = tmp / f"{kind}.lua"
    data = yaml.safe_load(HEALTH.read_text())["data"]
    script.write_text(data[f"resource.customizations.health.egp-operator.io_{kind}"])
    answer = subprocess.run(
        [str(tool), str(script)], input=json.dumps(objects), capture_output=True, text=True
    )
    assert answer.returncode == 0, answer.stderr
    verdicts = [json.loads(line) for line in answer.stdout.splitlines()]
    assert all("error" not in verdict for verdict in verdicts), verdicts
    return verdicts


def test_models_of_every_phase_get_the_documented_health(
    argocd_health: Path, egp: FakeEGPServer, mirror: Mirror, tmp_path: Path
) -> None:
    statuses = ("ready", "deploying", "failed", "deployment_timeout", "paused", "gone")
    upstream = generate_models(len(statuses), seed=71)
    for model, status in zip(upstream, statuses, strict=True):
        model |= {"status": status, "status_reason": REASON}
    egp.add_models(upstream)
    start_source(mirror, egp)
    wait_mirrored(mirror, len(statuses))
    egp.delete_model(upstream[-1]["id"])
    eventually(
        lambda: mirror.by_model_id()[upstream[-1]["id"]]["status"]["phase"] == "Missing",
        timeout=ONE_CYCLE,
        what="the deleted model to be Missing",
    )
    mirrored = mirror.by_model_id()

    verdicts = health(
        argocd_health, "EGPModel", [mirrored[model["id"]] for model in upstream], tmp_path
    )

    by_status = dict(zip(statuses, (verdict["status"] for verdict in verdicts), strict=True))
    assert by_status == {
        "ready": "Healthy",
        "deploying": "Progressing",
        "failed": "Degraded",
        "deployment_timeout": "Degraded",
        "paused": "Progressing",  # Unknown: a status this version does not know
        "gone": "Degraded",  # Missing
    }
    assert verdicts[2]["message"] == f"Failed: {REASON}"


def test_sources_get_healthy_degraded_or_suspended(
    argocd_health: Path, egp: FakeEGPServer, mirror: Mirror, tmp_path: Path
) -> None:
    egp.add_models(generate_models(2, seed=72))
    start_source(mirror, egp)
    mirror.create_secret("revoked-credentials", "sk-revoked-11111111")
    mirror.create_source("revoked", egp.url, accountID=EGP_ACCOUNT)
    mirror.create_secret("paused-credentials", "sk-unused-22222222")
    mirror.create_source("paused", egp.url, accountID=EGP_ACCOUNT, suspend=True)

    def verdicts() -> dict[str, str] | None:
        sources = [mirror.source(name) for name in ("src", "revoked", "paused")]
        found = [v["status"] for v in health(argocd_health, "EGPSource", sources, tmp_path)]
        expected = ["Healthy", "Degraded", "Suspended"]
        return (
            dict(zip(("src", "revoked", "paused"), found, strict=True))
            if found == expected
            else None
        )

    assert eventually(verdicts, timeout=ONE_CYCLE, what="each source's health")
