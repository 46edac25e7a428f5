"""What charts/egp-operator promises, judged by the real Helm 3 and Helm 4: it lints strictly,
its schema refuses wrong values by name, every rendering of a matrix of values grants least
privilege (Secrets only by name, only in tenant namespaces), every setting reaches the operator
under its own name, /metrics is readable by the readers named and asked for with Prometheus's
token, and its default rendering grants the same RBAC, runs the same pod and scrapes the same
way as deploy/ (kustomize), so the two cannot drift apart.

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
from release.chart import CHART, settings_schema
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
    "settings": {
        "allowedHosts": ["api.egp.scale.com", "10.0.0.0/8"],
        "kubeConcurrency": 8,
        "metricsCertFile": "/etc/egp-operator/metrics-tls/tls.crt",
        "metricsKeyFile": "/etc/egp-operator/metrics-tls/tls.key",
    },
    "metrics": {
        "readers": [{"name": "prometheus-k8s", "namespace": "monitoring"}],
        "serviceMonitor": {
            "enabled": True,
            "labels": {"release": "prometheus"},
            "scheme": "https",
            "tlsConfig": {"ca": {"secret": {"name": "metrics-ca", "key": "ca.crt"}}},
        },
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


def named(documents: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


#: The release's ClusterRole, and the one that may read its /metrics.
OPERATOR_ROLE, READER_ROLE = RELEASE, f"{RELEASE}-metrics-reader"
REVIEWS = {
    ("authentication.k8s.io", "tokenreviews", "create", ""),
    ("authorization.k8s.io", "subjectaccessreviews", "create", ""),
}


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
        ({"metrics": {"serviceMonitor": {"scheme": "ftp"}}}, "scheme"),
        ({"metrics": {"readers": [{"name": "prometheus"}]}}, "namespace"),
        ({"settings": {"metricsAuth": "no"}}, "metricsAuth"),
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
        """A value the schema accepts: its first choice, the least allowed number, or one of
        the type's."""
        if "enum" in spec:
            return spec["enum"][0]
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


def test_large_numbers_reach_the_operator_as_written(helm: Path, tmp_path: Path) -> None:
    """Helm reads YAML numbers as floats, and a float past a million prints as 4.194304e+06,
    which the operator cannot read as an integer."""
    values = {"settings": {"maxPageBytes": 4194304, "listingsMemoryBytes": 268435456}}

    env = {
        item["name"]: item.get("value") for item in container(render(helm, values, tmp_path))["env"]
    }

    assert env["EGP_OPERATOR_MAX_PAGE_BYTES"] == "4194304"
    assert env["EGP_OPERATOR_LISTINGS_MEMORY_BYTES"] == "268435456"


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
                assert group == "", role
                assert verb in ("get", "list", "watch"), role
                assert name, "a Secret grant without resourceNames reaches all the namespace's"
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
    bindings = [
        doc
        for doc in documents
        if doc["kind"] in ("RoleBinding", "ClusterRoleBinding")
        and doc["roleRef"]["name"] != READER_ROLE  # metrics.readers, below
    ]
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

    cluster_role = named(documents, "ClusterRole", OPERATOR_ROLE)
    assert grants(cluster_role["rules"]) == {
        ("kopf.dev", "clusterkopfpeerings", "list", ""),
        ("apiextensions.k8s.io", "customresourcedefinitions", "list", ""),
        ("apiextensions.k8s.io", "customresourcedefinitions", "watch", ""),
        ("", "namespaces", "list", ""),
        ("", "namespaces", "watch", ""),
        *REVIEWS,  # cluster-scoped: /metrics is served alike whatever the operator watches
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

    for chart_role, deploy_role in (
        (OPERATOR_ROLE, "egp-operator"),
        (READER_ROLE, "egp-operator-metrics-reader"),
    ):
        assert grants(named(chart, "ClusterRole", chart_role)["rules"]) == grants(
            named(deploy, "ClusterRole", deploy_role)["rules"]
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


def test_the_service_monitor_scrapes_as_deploys_does(
    helm: Path, kube_bin_dir: Path, tmp_path: Path
) -> None:
    """With Prometheus's own token (the operator serves /metrics to nobody else), and over TLS
    when the values say so."""
    enabled = {"metrics": {"serviceMonitor": {"enabled": True}}}
    [chart] = only(render(helm, enabled, tmp_path), "ServiceMonitor")["spec"]["endpoints"]
    [deploy] = only(
        kustomize(kube_bin_dir / "kubectl", REPO / "deploy" / "monitoring"), "ServiceMonitor"
    )["spec"]["endpoints"]
    assert chart == deploy
    assert chart["bearerTokenFile"] == "/var/run/secrets/kubernetes.io/serviceaccount/token"

    [tls] = only(render(helm, EVERYTHING, tmp_path), "ServiceMonitor")["spec"]["endpoints"]
    assert tls["scheme"] == "https"
    assert tls["tlsConfig"] == EVERYTHING["metrics"]["serviceMonitor"]["tlsConfig"]


@pytest.mark.parametrize("values", MATRIX.values(), ids=MATRIX.keys())
def test_the_metrics_reader_role_reads_metrics_only_and_is_bound_to_the_readers_named(
    helm: Path, values: dict[str, Any], tmp_path: Path
) -> None:
    documents = render(helm, values, tmp_path)

    assert grants(named(documents, "ClusterRole", READER_ROLE)["rules"]) == {
        ("", "/metrics", "get", "")
    }
    bound = [
        doc
        for doc in documents
        if doc["kind"] == "ClusterRoleBinding" and doc["roleRef"]["name"] == READER_ROLE
    ]
    readers = values.get("metrics", {}).get("readers", [])
    assert [subject for binding in bound for subject in binding["subjects"]] == [
        {"kind": "ServiceAccount", **reader} for reader in readers
    ]
    assert grants(named(documents, "ClusterRole", OPERATOR_ROLE)["rules"]) >= REVIEWS


def test_with_metrics_auth_off_the_operator_may_review_no_token(helm: Path, tmp_path: Path) -> None:
    documents = render(helm, {"settings": {"metricsAuth": False}}, tmp_path)

    assert not REVIEWS & grants(named(documents, "ClusterRole", OPERATOR_ROLE)["rules"])
    env = {item["name"]: item.get("value") for item in container(documents)["env"]}
    assert env["EGP_OPERATOR_METRICS_AUTH"] == "false"


@pytest.mark.parametrize(("kube_version", "accepted"), [("v1.31.9", False), ("v1.32.0", True)])
def test_the_chart_refuses_a_cluster_older_than_the_supported_range(
    helm: Path, kube_version: str, accepted: bool
) -> None:
    """docs/compatibility.md: 1.32 and newer."""
    rendered = helm_run(helm, "template", RELEASE, str(CHART), "--kube-version", kube_version)

    assert (rendered.returncode == 0) is accepted, rendered.stderr
