"""What charts/egp-operator promises, judged by the real Helm 3 and Helm 4: it lints strictly,
its schema refuses wrong values by name, every rendering of a matrix of values grants least
privilege (Secrets only by name, only in tenant namespaces), every setting reaches the operator
under its own name, and its default rendering grants the same RBAC and runs the same pod as
deploy/ (kustomize), so the two cannot drift apart.

No control plane here: `helm template` and `kubectl kustomize` render offline.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from egp_operator.settings import Settings
from egp_testbench.chart import CHART, settings_schema
from tests.e2e.conftest import go_tool
from tests.manifests import grants, kustomize

REPO = Path(__file__).parents[2]
RELEASE = "egp-operator"
NAMESPACE = "egp-operator-system"
HELMS = ("helm3", "helm4")

#: Everything a user may turn on at once, for lint and the RBAC matrix.
EVERYTHING: dict[str, Any] = {
    "replicaCount": 2,
    "watchNamespaces": ["team-a", "team-b"],
    "tenants": [
        {"namespace": "team-a", "secrets": ["egp-credentials"]},
        {"namespace": "team-b", "secrets": ["egp-key", "egp-key-staging"]},
    ],
    "settings": {"allowedHosts": ["api.egp.scale.com", "10.0.0.0/8"], "kubeConcurrency": 8},
    "metrics": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "prometheusRule": {"enabled": True},
        "dashboard": {"enabled": True},
    },
    "networkPolicy": {"enabled": True},
    "commonLabels": {"team": "platform"},
    "commonAnnotations": {"owner": "platform"},
}

#: The values matrix every RBAC check runs over.
MATRIX: dict[str, dict[str, Any]] = {
    "defaults": {},
    "tenants": {"tenants": EVERYTHING["tenants"]},
    "watched namespaces": {"watchNamespaces": ["team-a"], "tenants": EVERYTHING["tenants"][:1]},
    "own service account": {"serviceAccount": {"create": False, "name": "ops"}},
    "everything": EVERYTHING,
}


@pytest.fixture(scope="module", params=HELMS)
def helm(request: pytest.FixtureRequest) -> Path:
    return go_tool(str(request.param))


def helm_run(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), *args], capture_output=True, text=True, check=False, timeout=120
    )


def render(helm: Path, values: dict[str, Any], tmp_path: Path) -> list[dict[str, Any]]:
    """`helm template` of the chart as release egp-operator in egp-operator-system."""
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    rendered = helm_run(
        helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "-f", str(values_file)
    )
    assert rendered.returncode == 0, rendered.stderr
    return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]


def only(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [doc for doc in documents if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def container(documents: list[dict[str, Any]]) -> dict[str, Any]:
    [operator] = only(documents, "Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(operator)


# ---- lint and schema -------------------------------------------------------------------------


@pytest.mark.parametrize("values", [{}, EVERYTHING], ids=["defaults", "everything"])
def test_the_chart_lints_strictly(helm: Path, values: dict[str, Any], tmp_path: Path) -> None:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))

    linted = helm_run(helm, "lint", "--strict", str(CHART), "-f", str(values_file))

    assert linted.returncode == 0, linted.stdout + linted.stderr


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"replicaCount": "two"}, "replicaCount"),
        ({"settings": {"egpMaxRetries": 11}}, "egpMaxRetries"),
        ({"settings": {"kubeConcurency": 8}}, "kubeConcurency"),
        ({"settings": {"priority": 5}}, "priority"),
        ({"tenants": [{"namespace": "Team_A", "secrets": ["egp"]}]}, "namespace"),
        ({"tenants": [{"namespace": "team-a", "secrets": []}]}, "secrets"),
        ({"watchNamespaces": ["team-a/.."]}, "watchNamespaces"),
        ({"image": {"digest": "latest"}}, "digest"),
        ({"metrics": {"port": 0}}, "port"),
        ({"metrics": {"serviceMonitor": {"interval": "often"}}}, "interval"),
        ({"replicas": 2}, "replicas"),
    ],
    ids=lambda value: json.dumps(value) if isinstance(value, dict) else value,
)
def test_the_schema_refuses_a_wrong_value_by_its_name(
    helm: Path, values: dict[str, Any], named: str, tmp_path: Path
) -> None:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))

    refused = helm_run(helm, "template", RELEASE, str(CHART), "-f", str(values_file))

    assert refused.returncode != 0
    assert "schema" in refused.stderr, refused.stderr
    assert named in refused.stderr, refused.stderr


def test_every_setting_reaches_the_operator_under_its_own_name(helm: Path, tmp_path: Path) -> None:
    def sample(spec: dict[str, Any]) -> Any:
        """A value the schema accepts: the least allowed number, or one of the type's."""
        if spec["type"] in ("integer", "number"):
            return spec.get("minimum", spec.get("exclusiveMinimum", 0) + 1)
        return {"boolean": False, "string": "x", "array": ["a", "b"]}[spec["type"]]

    properties = settings_schema()["properties"]
    values = {"settings": {name: sample(spec) for name, spec in properties.items()}}

    prefix = Settings.model_config["env_prefix"]
    env = {
        item["name"]: item["value"]
        for item in container(render(helm, values, tmp_path))["env"]
        if item["name"].startswith(prefix)
    }

    assert set(env) == {f"{prefix}{field.upper()}" for field in Settings.model_fields} - {
        f"{prefix}PRIORITY"
    }
    parsed = Settings.model_validate(
        {name.removeprefix(prefix).lower(): value for name, value in env.items()}
    )
    assert parsed.allowed_hosts == ("a", "b")
    assert parsed.egp_verify_tls is False


# ---- least privilege -------------------------------------------------------------------------


@pytest.mark.parametrize("values", MATRIX.values(), ids=MATRIX.keys())
def test_no_rendering_grants_a_wildcard_or_a_secret_beyond_the_tenants_names(
    helm: Path, values: dict[str, Any], tmp_path: Path
) -> None:
    documents = render(helm, values, tmp_path)
    allowed = {
        (tenant["namespace"], name)
        for tenant in values.get("tenants", [])
        for name in tenant["secrets"]
    }

    secret_grants = set()
    for role in (doc for doc in documents if doc["kind"] in ("Role", "ClusterRole")):
        for group, resource, verb, name in grants(role["rules"]):
            assert "*" not in (group, resource, verb, name), role
            if resource.split("/")[0] == "secrets":
                assert role["kind"] == "Role", "a ClusterRole reaches every namespace's Secrets"
                assert (group, verb) == ("", "get"), role
                secret_grants.add((role["metadata"]["namespace"], name))
    assert secret_grants == allowed


@pytest.mark.parametrize("values", MATRIX.values(), ids=MATRIX.keys())
def test_every_binding_names_the_operators_service_account_only(
    helm: Path, values: dict[str, Any], tmp_path: Path
) -> None:
    documents = render(helm, values, tmp_path)
    account = values.get("serviceAccount", {}).get("name") or RELEASE
    pod = only(documents, "Deployment")["spec"]["template"]["spec"]

    assert pod["serviceAccountName"] == account
    bindings = [doc for doc in documents if doc["kind"] in ("RoleBinding", "ClusterRoleBinding")]
    assert bindings
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}
        ]
    created = [doc["metadata"]["name"] for doc in documents if doc["kind"] == "ServiceAccount"]
    assert created == ([] if "serviceAccount" in values else [account])


def test_watched_namespaces_get_roles_and_the_cluster_role_keeps_no_namespaced_access(
    helm: Path, tmp_path: Path
) -> None:
    documents = render(helm, {"watchNamespaces": ["team-a", "team-b"]}, tmp_path)

    cluster_role = only(documents, "ClusterRole")
    assert grants(cluster_role["rules"]) == {
        ("kopf.dev", "clusterkopfpeerings", "list", ""),
        ("apiextensions.k8s.io", "customresourcedefinitions", "list", ""),
        ("apiextensions.k8s.io", "customresourcedefinitions", "watch", ""),
        ("", "namespaces", "list", ""),
        ("", "namespaces", "watch", ""),
    }
    roles = {doc["metadata"]["namespace"]: doc for doc in documents if doc["kind"] == "Role"}
    assert set(roles) == {"team-a", "team-b"}
    assert container(documents)["args"] == ["--namespace", "team-a", "--namespace", "team-b"]


# ---- one truth with deploy/ ------------------------------------------------------------------


def test_the_default_chart_grants_and_runs_what_deploy_does(
    helm: Path, kube_bin_dir: Path, tmp_path: Path
) -> None:
    """Change either alone and this fails: the same cluster-wide grants, the same bindings,
    the same pod (image aside: the chart's tag is its appVersion, deploy/'s `latest`)."""
    chart = render(helm, {"image": {"tag": "latest"}}, tmp_path)
    deploy = kustomize(kube_bin_dir / "kubectl", REPO / "deploy")

    def kept(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
        return next(doc for doc in documents if doc["kind"] == kind)

    assert grants(kept(chart, "ClusterRole")["rules"]) == grants(
        kept(deploy, "ClusterRole")["rules"]
    )
    chart_binding, deploy_binding = (
        kept(chart, "ClusterRoleBinding"),
        kept(deploy, "ClusterRoleBinding"),
    )
    assert chart_binding["subjects"] == deploy_binding["subjects"]
    assert chart_binding["roleRef"] == deploy_binding["roleRef"]
    chart_deployment, deploy_deployment = kept(chart, "Deployment"), kept(deploy, "Deployment")
    assert chart_deployment["metadata"]["namespace"] == deploy_deployment["metadata"]["namespace"]
    for field in ("replicas", "strategy"):
        assert chart_deployment["spec"][field] == deploy_deployment["spec"][field]
    chart_pod = chart_deployment["spec"]["template"]["spec"]
    assert chart_pod == deploy_deployment["spec"]["template"]["spec"]
    chart_service, deploy_service = kept(chart, "Service"), kept(deploy, "Service")
    assert chart_service["metadata"]["name"] == deploy_service["metadata"]["name"]
    assert chart_service["spec"]["ports"] == deploy_service["spec"]["ports"]


@pytest.mark.parametrize(("kube_version", "accepted"), [("v1.31.9", False), ("v1.32.0", True)])
def test_the_chart_refuses_a_cluster_older_than_the_supported_range(
    helm: Path, kube_version: str, accepted: bool
) -> None:
    """docs/compatibility.md: 1.32 and newer."""
    rendered = helm_run(helm, "template", RELEASE, str(CHART), "--kube-version", kube_version)

    assert (rendered.returncode == 0) is accepted, rendered.stderr
