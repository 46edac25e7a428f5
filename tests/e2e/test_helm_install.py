"""`helm install`, `helm upgrade` and `helm uninstall` of charts/egp-operator on a real API
server, with Helm 3 and Helm 4: the operator, run as the chart's ServiceAccount with the
chart's own environment and arguments, mirrors both tenant namespaces the values name and can
read no other Secret; an upgrade that changes the tenants moves the grants with it; and an
uninstall leaves only what docs/install.md says it keeps.

Each Helm gets a control plane of its own, so that no other test's CRDs or operators are there
and the release's names are used as they are. The tests of a module run in file order, each on
the release as the one before left it.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client

from egp_operator.resources.models import GROUP, MODEL_PLURAL, SOURCE_PLURAL, VERSION
from egp_testbench.cluster import LocalControlPlane
from egp_testbench.fake_egp import FakeEGPServer, generate_models
from egp_testbench.operator_process import OPERATOR_COMMAND
from release.chart import CHART
from tests.e2e.conftest import go_tool
from tests.e2e.harness import (
    EGP_ACCOUNT,
    EGP_KEY,
    OperatorProcess,
    service_account_kubeconfig,
    service_account_token,
)
from tests.e2e.polling import eventually

RELEASE = "egp"
NAMESPACE = "egp-system"
#: The ServiceAccount the release's `metrics.readers` binds, as a platform admin names theirs.
MONITORING, PROMETHEUS = "monitoring", "prometheus"
SECRET = "egp-credentials"
TEAM_A, TEAM_B, TEAM_C, OUTSIDER = "team-a", "team-b", "team-c", "outsider"
TEAMS = (TEAM_A, TEAM_B, TEAM_C, OUTSIDER)
#: What `helm uninstall` leaves, as docs/install.md says: the CRDs (so every EGPSource and
#: EGPModel), and the ClusterKopfPeering the operator made at start-up.
KEPT_CRDS = {
    "egpsources.egp-operator.io",
    "egpmodels.egp-operator.io",
    "clusterkopfpeerings.kopf.dev",
    "kopfpeerings.kopf.dev",
}


@dataclass
class Release:
    helm: Path
    cluster: LocalControlPlane
    kubectl: Path
    work: Path

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.helm), "--kubeconfig", str(self.cluster.kubeconfig), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=180,
        )

    def kubectl_run(
        self, *args: str, kubeconfig: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """kubectl as the admin, or as whoever `kubeconfig` logs in as."""
        config = kubeconfig or self.cluster.kubeconfig
        return subprocess.run(
            [str(self.kubectl), "--kubeconfig", str(config), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )

    def install(
        self, verb: str, values: dict[str, Any], name: str = RELEASE, namespace: str = NAMESPACE
    ) -> None:
        """`helm install` or `helm upgrade` of the chart with `values`, as release `name`."""
        values_file = self.work / f"{name}-{verb}-values.yaml"
        values_file.write_text(yaml.safe_dump(values))
        extra = ["--create-namespace"] if verb == "install" else []
        done = self.run(verb, name, str(CHART), "-n", namespace, "-f", str(values_file), *extra)
        assert done.returncode == 0, done.stderr

    def can_i(self, kubeconfig: Path, verb: str, what: str, namespace: str) -> bool:
        answer = self.kubectl_run(
            "auth", "can-i", verb, what, "-n", namespace, kubeconfig=kubeconfig
        )
        return answer.stdout.strip() == "yes"

    def deployment(self, namespace: str = NAMESPACE) -> dict[str, Any]:
        found = self.kubectl_run("get", "deployment", "-n", namespace, "-o", "json")
        assert found.returncode == 0, found.stderr
        [deployment] = json.loads(found.stdout)["items"]
        return dict(deployment)

    def operator(self, log: Path, namespace: str = NAMESPACE) -> OperatorProcess:
        """`egp-operator run` as the Deployment's container runs it: the chart's arguments and
        environment (loopback ports aside), logged in as the chart's ServiceAccount."""
        pod = self.deployment(namespace)["spec"]["template"]["spec"]
        [container] = pod["containers"]
        kubeconfig = service_account_kubeconfig(
            self.cluster,
            namespace,
            pod["serviceAccountName"],
            self.work / f"{namespace}.kubeconfig",
        )
        settings = {
            item["name"].removeprefix("EGP_OPERATOR_").lower(): item["value"]
            for item in container["env"]
            if item["name"].startswith("EGP_OPERATOR_")
            and item["name"] not in ("EGP_OPERATOR_METRICS_PORT", "EGP_OPERATOR_LIVENESS_PORT")
        }
        command = (*OPERATOR_COMMAND, *container.get("args", []))
        return OperatorProcess(kubeconfig, log, command=command, **settings)


@pytest.fixture(scope="module", params=["helm3", "helm4"])
def release(
    request: pytest.FixtureRequest,
    kube_bin_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Release]:
    helm = go_tool(str(request.param))
    work = tmp_path_factory.mktemp(str(request.param))
    with LocalControlPlane(kube_bin_dir, work / "cluster") as cluster, cluster.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=MONITORING)))
        core.create_namespaced_service_account(
            MONITORING, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=PROMETHEUS))
        )
        for team in TEAMS:
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=team)))
            core.create_namespaced_secret(
                team,
                client.V1Secret(
                    metadata=client.V1ObjectMeta(name=SECRET), string_data={"apiKey": EGP_KEY}
                ),
            )
        yield Release(helm, cluster, kube_bin_dir / "kubectl", work)


def _sources(api: Any, egp: FakeEGPServer, namespaces: tuple[str, ...], name: str = "egp") -> None:
    objects = client.CustomObjectsApi(api)
    for namespace in namespaces:
        objects.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            SOURCE_PLURAL,
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "EGPSource",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "baseURL": egp.url,
                    "accountID": EGP_ACCOUNT,
                    "credentialsSecretRef": {"name": SECRET},
                    "refreshInterval": "10s",
                },
            },
        )


def _synced_reasons(
    api: Any, namespaces: tuple[str, ...], name: str = "egp"
) -> dict[str, str] | None:
    """Each namespace's source's Synced reason, once every one has one."""
    objects = client.CustomObjectsApi(api)
    reasons = {}
    for namespace in namespaces:
        status = objects.get_namespaced_custom_object(
            GROUP, VERSION, namespace, SOURCE_PLURAL, name
        ).get("status", {})
        synced = [c for c in status.get("conditions", []) if c["type"] == "Synced"]
        if not synced:
            return None
        reasons[namespace] = synced[0]["reason"]
    return reasons


def _denied(operator: OperatorProcess, unless: str | None = None) -> list[str]:
    """The operator's log lines that say a request was forbidden, but for those naming
    `unless`."""
    return [
        line
        for line in operator.log().splitlines()
        if ("Forbidden" in line or " 403 " in line) and not (unless and unless in line)
    ]


def _scrape(operator: OperatorProcess, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(operator.metrics_url, headers=headers, timeout=10)


def test_install_mirrors_both_tenants_as_the_charts_service_account(release: Release) -> None:
    """... and serves /metrics to the ServiceAccount `metrics.readers` names only, asking the
    API server with the grants the chart gives the operator."""
    release.install(
        "install",
        {
            "tenants": [
                {"namespace": TEAM_A, "secrets": [SECRET]},
                {"namespace": TEAM_B, "secrets": [SECRET]},
            ],
            "settings": {"allowedHosts": ["127.0.0.1"], "statusHeartbeatSeconds": 3600},
            "metrics": {"readers": [{"name": PROMETHEUS, "namespace": MONITORING}]},
        },
    )
    prometheus = service_account_token(release.cluster, MONITORING, PROMETHEUS)
    stranger = service_account_token(release.cluster, TEAM_A, "default")
    upstream = generate_models(3, seed=51)
    with (
        release.cluster.api_client() as api,
        FakeEGPServer(api_key=EGP_KEY, account_id=EGP_ACCOUNT) as egp,
    ):
        egp.add_models(upstream)
        operator = release.operator(release.work / "install.log")
        try:
            _sources(api, egp, (TEAM_A, TEAM_B, OUTSIDER))
            reasons = eventually(
                lambda: _synced_reasons(api, (TEAM_A, TEAM_B, OUTSIDER)),
                timeout=90,
                what="a cycle of every tenant's source",
            )
            for team in (TEAM_A, TEAM_B):
                models = client.CustomObjectsApi(api).list_namespaced_custom_object(
                    GROUP, VERSION, team, MODEL_PLURAL
                )["items"]
                assert {m["spec"]["modelID"] for m in models} == {m["id"] for m in upstream}
            scrapes = {
                who: _scrape(operator, token).status_code
                for who, token in (("anonymous", None), ("stranger", stranger))
            }
            served = _scrape(operator, prometheus)
        finally:
            operator.stop()
    assert reasons == {TEAM_A: "Synced", TEAM_B: "Synced", OUTSIDER: "SecretUnreadable"}
    assert scrapes == {"anonymous": 401, "stranger": 403}
    assert served.status_code == 200
    assert f'namespace="{TEAM_A}"' in served.text
    denied = _denied(operator, unless=f"{OUTSIDER}/egp")  # its Secret is not granted
    assert not denied, "\n".join(denied)


def test_the_charts_service_account_reads_no_other_secret(release: Release) -> None:
    account = release.work / f"{NAMESPACE}.kubeconfig"

    assert release.can_i(account, "get", f"secrets/{SECRET}", TEAM_A)
    assert release.can_i(account, "get", f"secrets/{SECRET}", TEAM_B)
    assert not release.can_i(account, "get", "secrets/other", TEAM_A)
    assert not release.can_i(account, "get", f"secrets/{SECRET}", OUTSIDER)
    assert not release.can_i(account, "get", f"secrets/{SECRET}", NAMESPACE)
    for team in TEAMS:
        assert not release.can_i(account, "list", "secrets", team)
        assert not release.can_i(account, "watch", "secrets", team)


def test_an_upgrade_moves_the_grants_and_settings_with_the_values(release: Release) -> None:
    release.install(
        "upgrade",
        {
            "tenants": [
                {"namespace": TEAM_A, "secrets": [SECRET]},
                {"namespace": TEAM_C, "secrets": [SECRET]},
            ],
            "settings": {"allowedHosts": ["127.0.0.1"], "kubeConcurrency": 4},
        },
    )
    account = release.work / f"{NAMESPACE}.kubeconfig"

    assert release.can_i(account, "get", f"secrets/{SECRET}", TEAM_C)
    assert not release.can_i(account, "get", f"secrets/{SECRET}", TEAM_B)
    assert release.can_i(account, "get", f"secrets/{SECRET}", TEAM_A)
    [container] = release.deployment()["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["EGP_OPERATOR_KUBE_CONCURRENCY"] == "4"
    assert "EGP_OPERATOR_STATUS_HEARTBEAT_SECONDS" not in env


def test_uninstall_leaves_only_the_crds_and_the_mirror(release: Release) -> None:
    done = release.run("uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "120s")
    assert done.returncode == 0, done.stderr

    def left() -> str:
        found = release.kubectl_run(
            "get",
            "all,roles,rolebindings,clusterroles,clusterrolebindings,serviceaccounts,configmaps",
            "--all-namespaces",
            "-l",
            f"app.kubernetes.io/instance={RELEASE}",
            "-o",
            "name",
        )
        assert found.returncode == 0, found.stderr
        return found.stdout.strip()

    eventually(lambda: left() == "", timeout=60, what="nothing of the release left")
    crds = release.kubectl_run("get", "crds", "-o", "name")
    assert {line.partition("/")[2] for line in crds.stdout.split()} == KEPT_CRDS
    sources = release.kubectl_run("get", "egpsources", "-A", "-o", "name")
    assert len(sources.stdout.split()) == 3


SHARD, SHARD_NAMESPACE = "egp-shard", "egp-shard-system"


def test_a_release_serving_some_namespaces_mirrors_them_with_roles_alone(
    release: Release,
) -> None:
    """watchNamespaces: the operator runs with `--namespace` arguments and Roles in those
    namespaces only (its ClusterRole keeps CRD discovery and the peering check); it mirrors
    them, and leaves a namespace it does not serve alone."""
    served = (TEAM_A, TEAM_C)
    release.install(
        "install",
        {
            "watchNamespaces": list(served),
            "tenants": [{"namespace": team, "secrets": [SECRET]} for team in served],
            "peeringName": SHARD,
            "settings": {"allowedHosts": ["127.0.0.1"], "statusHeartbeatSeconds": 3600},
        },
        name=SHARD,
        namespace=SHARD_NAMESPACE,
    )
    with (
        release.cluster.api_client() as api,
        FakeEGPServer(api_key=EGP_KEY, account_id=EGP_ACCOUNT) as egp,
    ):
        egp.add_models(generate_models(2, seed=52))
        operator = release.operator(release.work / "shard.log", namespace=SHARD_NAMESPACE)
        try:
            _sources(api, egp, (*served, OUTSIDER), name=SHARD)
            reasons = eventually(
                lambda: _synced_reasons(api, served, name=SHARD),
                timeout=90,
                what="a cycle of each served namespace's source",
            )
            outsider = client.CustomObjectsApi(api).get_namespaced_custom_object(
                GROUP, VERSION, OUTSIDER, SOURCE_PLURAL, SHARD
            )
        finally:
            operator.stop()
    assert reasons == dict.fromkeys(served, "Synced")
    assert "conditions" not in outsider.get("status", {})  # never cycled: not served
    denied = _denied(operator)
    assert not denied, "\n".join(denied)
