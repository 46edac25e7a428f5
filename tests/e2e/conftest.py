"""Fixtures for end-to-end tests against a real control plane on loopback.

One control plane serves the whole session (starting one takes seconds, not milliseconds);
each test works in its own namespace so tests do not see each other's objects.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from egp_testbench.cluster import ClusterError, LocalControlPlane, find_bin_dir
from egp_testbench.fake_egp import FakeEGPServer
from tests.e2e.harness import (
    EGP_ACCOUNT,
    EGP_KEY,
    Mirror,
    OperatorProcess,
    checked_tool,
    create_peering,
    install_crds,
    running_operator,
)

E2E_DIR = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/e2e with `e2e`, so `-m "not e2e"` skips them all."""
    for item in items:
        if E2E_DIR in item.path.parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def kube_bin_dir() -> Path:
    """The pinned control-plane binaries; never built here (a cold build outlasts the
    per-test timeout): `make test` builds them first. Missing binaries fail the e2e tests
    rather than skip them, so a broken build step cannot pass unnoticed; deselect them with
    `-m "not e2e"` (or `make test-fast`) to work without a control plane."""
    try:
        return find_bin_dir(build=False)
    except ClusterError as err:
        pytest.fail(f"{err}; build them with `make kube-bins`")


def go_tool(name: str) -> Path:
    """A CLI of tools/ (`make go-tools` builds them, `make test` too); missing, the tests
    that need it fail rather than skip."""
    found = checked_tool(f"{name}/build.sh")
    binary = Path(found) / name if found else None
    if binary is None or not os.access(binary, os.X_OK):
        pytest.fail(f"{name} is not built: `make go-tools` (make test does it)")
    return binary


@pytest.fixture(scope="session")
def kstatus() -> Path:
    """The kstatus library (Flux, kpt, the cli-utils applier) as a CLI."""
    return go_tool("kstatus")


@pytest.fixture(scope="session")
def argocd_health() -> Path:
    """Argo CD's health-script runtime (gopher-lua) as a CLI."""
    return go_tool("argocd-health")


@pytest.fixture(scope="session")
def kube_state_metrics() -> Path:
    """kube-state-metrics itself: upstream's command, built from the pinned module."""
    return go_tool("kube-state-metrics")


@pytest.fixture(scope="session")
def prometheus_bin_dir() -> Path:
    """Debian's `prometheus` and `promtool`, unpacked by `make prometheus-bins` (make test
    does it); missing, the tests that need them fail rather than skip."""
    found = os.environ.get("EGP_PROMETHEUS_BIN_DIR") or checked_tool("prometheus/install.sh")
    bin_dir = Path(found) if found else None
    if bin_dir is None or not all(
        os.access(bin_dir / tool, os.X_OK) for tool in ("prometheus", "promtool")
    ):
        pytest.fail("Prometheus is not installed: `make prometheus-bins` (make test does it)")
    return bin_dir


@pytest.fixture(scope="session")
def control_plane(
    kube_bin_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalControlPlane]:
    """A running etcd + kube-apiserver + kube-controller-manager, stopped after the session,
    with an audit log: who asked the API server what (`test_secret_watch.py` counts it)."""
    with LocalControlPlane(kube_bin_dir, tmp_path_factory.mktemp("cluster"), audit=True) as plane:
        yield plane


@pytest.fixture
def api(control_plane: LocalControlPlane) -> Iterator[Any]:
    """An admin `kubernetes.client.ApiClient`, closed after the test."""
    api_client = control_plane.api_client()
    try:
        yield api_client
    finally:
        api_client.close()


@pytest.fixture
def namespace(api: Any) -> Iterator[str]:
    """A fresh namespace for one test, deleted (without waiting) afterwards."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


# ---- the operator's CRDs -------------------------------------------------------------------


@pytest.fixture(scope="session")
def crds_installed(control_plane: LocalControlPlane) -> list[str]:
    """The CRDs, installed once per session."""
    return install_crds(control_plane)


@pytest.fixture(scope="session")
def peering(control_plane: LocalControlPlane, crds_installed: list[str]) -> str:
    return create_peering(control_plane)


@pytest.fixture(scope="module")
def operator(
    control_plane: LocalControlPlane, peering: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """One replica of the operator per test module, cluster-wide, as `egp-operator run` runs
    in production (per module, so a module may kill it or run its own). The status heartbeat
    is long so that a steady state is truly write-free in a test; EGP timeouts are short so
    that a hanging EGP shows within a test's patience; pages may be as small as 10 models, so
    that a few dozen models make several pages."""
    with running_operator(
        control_plane.kubeconfig,
        tmp_path_factory.mktemp("operator") / "operator.log",
        status_heartbeat_seconds="3600",
        egp_timeout_seconds="3",
        egp_max_retries="2",
        min_page_size="10",
        egp_max_requests_per_cycle="2100",  # a whole listing, in pages of 10
    ) as replica:
        yield replica


@pytest.fixture
def egp() -> Iterator[FakeEGPServer]:
    """A local EGP server for one test."""
    with FakeEGPServer(api_key=EGP_KEY, account_id=EGP_ACCOUNT) as server:
        yield server


@pytest.fixture
def mirror(api: Any, namespace: str) -> Mirror:
    return Mirror(api, namespace)
