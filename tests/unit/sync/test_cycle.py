"""A cycle reads only its own namespace's Secret, refuses what it may not call or send, ends
within its deadline, and turns any failure, even a bug, into a status."""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any

import pytest
from prometheus_client import REGISTRY

from egp_operator.egp import EGPClient
from egp_operator.kube import core_path
from egp_operator.settings import Settings
from egp_operator.sync import cycle
from egp_operator.sync.cycle import SourceSyncer
from egp_testbench.fake_kube import FakeKube

NAMESPACE, SOURCE = "team-a", "prod"
KEY = "sk-unit-4e5f6a7b"


def source(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": NAMESPACE, "name": SOURCE, "uid": "uid-1", "generation": 1},
        "spec": {
            "baseURL": "http://127.0.0.1:9",
            "credentialsSecretRef": {"name": "egp-credentials"},
            **spec,
        },
    }


def secret(value: str, namespace: str = NAMESPACE, name: str = "egp-credentials") -> Any:
    return {
        "metadata": {"namespace": namespace, "name": name},
        "data": {"apiKey": base64.b64encode(value.encode()).decode()},
    }


def syncer(kube: FakeKube, **settings: Any) -> SourceSyncer:
    return SourceSyncer(kube, Settings(**settings))


def last_status(kube: FakeKube) -> dict[str, Any]:
    status: dict[str, Any] = kube.status_writes()[-1]["status"]
    return status


def synced(status: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == "Synced")


SECRET_PATH = core_path(NAMESPACE, "secrets", "egp-credentials")


async def test_a_secret_answered_for_another_namespace_is_not_used() -> None:
    kube = FakeKube({SECRET_PATH: secret(KEY, namespace="team-b")})

    report = await syncer(kube).run_cycle(source(), [])

    assert report.outcome.reason == "SecretUnreadable"
    assert report.egp_requests == 0
    assert synced(last_status(kube))["status"] == "False"


@pytest.mark.parametrize("name", ["../../team-b/secrets/egp-credentials", "team-b/x", ".."])
async def test_a_secret_name_that_is_a_path_is_an_invalid_spec_and_nothing_is_read(
    name: str,
) -> None:
    kube = FakeKube()

    report = await syncer(kube).run_cycle(source(credentialsSecretRef={"name": name}), [])

    assert report.outcome.reason == "InvalidSpec"
    assert "credentialsSecretRef.name" in report.outcome.message
    assert kube.paths("GET") == []


@pytest.mark.parametrize("key", ["sk-with\nnewline", "sk with space", "sk-ünïcode", "sk-\x00"])
async def test_a_key_that_is_not_visible_ascii_is_refused_before_any_request(key: str) -> None:
    kube = FakeKube({SECRET_PATH: secret(f"  {key}  ")})

    report = await syncer(kube).run_cycle(source(), [])

    assert report.outcome.reason == "SecretKeyInvalid"
    assert report.egp_requests == 0
    assert key.strip() not in str(kube.requests)


async def test_a_metadata_base_url_is_refused_before_any_request() -> None:
    kube = FakeKube({SECRET_PATH: secret(KEY)})

    report = await syncer(kube).run_cycle(source(baseURL="http://169.254.169.254/latest"), [])

    assert report.outcome.reason == "EndpointRefused"
    assert report.egp_requests == 0
    ready = next(c for c in last_status(kube)["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "EndpointRefused")


async def test_a_host_outside_the_allow_list_is_refused() -> None:
    kube = FakeKube({SECRET_PATH: secret(KEY)})

    report = await syncer(kube, allowed_hosts="api.egp.scale.com").run_cycle(source(), [])

    assert report.outcome.reason == "EndpointRefused"
    assert "EGP_OPERATOR_ALLOWED_HOSTS" in report.outcome.message


async def test_a_cycle_that_outlives_its_deadline_ends_with_a_status(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def endless(self: EGPClient, **_: Any) -> None:
        await asyncio.sleep(3600)  # a listing that never ends: only the cycle deadline does

    monkeypatch.setattr(EGPClient, "list_models", endless)
    kube = FakeKube({SECRET_PATH: secret(KEY)})

    report = await syncer(kube, cycle_deadline_seconds=0.2).run_cycle(source(), [])

    assert report.outcome.reason == "DeadlineExceeded"
    assert synced(last_status(kube))["reason"] == "DeadlineExceeded"


async def test_a_bug_in_a_cycle_becomes_a_status_a_metric_and_a_traceback(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_planner(*_: Any, **__: Any) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    async def listing(self: EGPClient, *_: Any, **__: Any) -> Any:
        return type("Listing", (), {"models": (), "requests": 1})()

    monkeypatch.setattr(cycle, "make_plan", broken_planner)
    monkeypatch.setattr(EGPClient, "walk_models", listing)
    kube = FakeKube({SECRET_PATH: secret(KEY)})
    errors = {"namespace": NAMESPACE, "source": SOURCE, "reason": "InternalError"}
    before = REGISTRY.get_sample_value("egp_operator_sync_errors_total", errors) or 0.0

    with caplog.at_level(logging.ERROR):
        report = await syncer(kube).run_cycle(source(), [])

    assert report.outcome.reason == "InternalError"
    assert "RecursionError" in report.outcome.message
    assert synced(last_status(kube))["reason"] == "InternalError"
    assert REGISTRY.get_sample_value("egp_operator_sync_errors_total", errors) == before + 1
    assert any(record.exc_info for record in caplog.records)
