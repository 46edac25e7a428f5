"""What one cycle may cost in requests to EGP: the operator chooses the least page size, and a
cycle sends at most its budget of requests, retries included, whatever the endpoint does."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from egp_operator.kube import core_path
from egp_operator.settings import Settings
from egp_operator.sync.cycle import SourceSyncer
from egp_testbench.fake_egp import FakeEGPServer, Fault, generate_models
from egp_testbench.fake_kube import FakeKube

KEY, ACCOUNT, NAMESPACE, SOURCE = "sk-request-budget-1", "acct-budget", "team-a", "thrifty"


@pytest.fixture
def egp() -> Iterator[FakeEGPServer]:
    with FakeEGPServer(api_key=KEY, account_id=ACCOUNT) as server:
        yield server


def source(egp: FakeEGPServer, page_size: int) -> dict[str, Any]:
    return {
        "metadata": {"namespace": NAMESPACE, "name": SOURCE, "uid": "uid-t", "generation": 1},
        "spec": {
            "baseURL": egp.url,
            "accountID": ACCOUNT,
            "credentialsSecretRef": {"name": "creds"},
            "pageSize": page_size,
        },
    }


def kube() -> FakeKube:
    encoded = base64.b64encode(KEY.encode()).decode()
    secret = {"metadata": {"namespace": NAMESPACE, "name": "creds"}, "data": {"apiKey": encoded}}
    return FakeKube({core_path(NAMESPACE, "secrets", "creds"): secret})


def list_requests(egp: FakeEGPServer) -> list[dict[str, Any]]:
    return [r for r in egp.recent_requests() if r["endpoint"] == "list"]


async def test_a_page_size_of_one_is_served_in_pages_of_the_operators_least_size(
    egp: FakeEGPServer,
) -> None:
    egp.add_models(generate_models(250, seed=7))

    async with SourceSyncer(kube(), Settings()) as syncer:
        report = await syncer.run_cycle(source(egp, page_size=1), [])

    assert report.outcome.reason == "Synced"
    requests = list_requests(egp)
    assert len(requests) == 3  # 100 + 100 + 50, not 250 requests
    assert {r["query"]["limit"] for r in requests} == {"100"}


async def test_a_cycle_stops_at_its_request_budget_and_changes_nothing(
    egp: FakeEGPServer,
) -> None:
    egp.add_models(generate_models(250, seed=8))
    egp.inject(
        Fault(endpoint="list", status=503, page=2, times=100, headers={"retry-after-ms": "1"})
    )
    settings = Settings(egp_max_requests_per_cycle=5, max_models_per_source=300, egp_max_retries=10)
    cluster = kube()

    async with SourceSyncer(cluster, settings) as syncer:
        report = await syncer.run_cycle(source(egp, page_size=100), [])

    assert report.outcome.reason == "IncompleteListing"
    assert "the 5 requests to EGP it may send" in report.outcome.message
    assert len(list_requests(egp)) == 5
    assert not [path for verb, path, _ in cluster.requests if "/egpmodels" in path]


def test_settings_refuse_a_request_budget_too_small_for_the_largest_listing() -> None:
    with pytest.raises(ValidationError, match="must be at least 200"):
        Settings(max_models_per_source=20_000, min_page_size=100, egp_max_requests_per_cycle=199)
