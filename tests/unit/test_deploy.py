"""What deploy/ promises: the kustomizations render, the RBAC is least-privilege (no Secrets
cluster-wide), the Deployment is locked down and probed as documented, the alerts use only
metrics the operator exports, and the monitoring and GitOps add-ons agree with the CRDs.

Most checks read the manifests as kustomize would list them (no kubectl needed, so they run in
`make test-fast`); the rendering checks need the kubectl that `make kube-bins` builds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from egp_operator import metrics
from egp_operator.cli import build_parser
from egp_operator.resources.models import GROUP, VERSION, EGPSourceSpec, SecretKeyRef
from egp_operator.settings import Settings
from egp_operator.vocabulary import CONDITION_TYPES, PHASES, Reason
from tests.manifests import grants, kustomize

REPO = Path(__file__).parents[2]
DEPLOY = REPO / "deploy"
EXAMPLES = DEPLOY / "examples"
MONITORING = DEPLOY / "monitoring"
CRDS = REPO / "crds"
KUSTOMIZATIONS = {"deploy": DEPLOY, "examples": EXAMPLES, "monitoring": MONITORING, "crds": CRDS}


def load(root: Path) -> list[dict[str, Any]]:
    """The documents of a kustomization's resources, recursively, as written (no transforms)."""
    kustomization = yaml.safe_load((root / "kustomization.yaml").read_text())
    documents: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        path = root / resource
        if path.is_dir():
            documents += load(path)
        else:
            documents += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for generated in kustomization.get("configMapGenerator", []):
        metadata = {key: generated[key] for key in ("name", "namespace") if key in generated}
        documents.append({"kind": "ConfigMap", "metadata": metadata})
    return documents


def one(documents: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        doc
        for doc in documents
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return load(DEPLOY)


@pytest.fixture(scope="module")
def example() -> list[dict[str, Any]]:
    return load(EXAMPLES)


# ---- rendering -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kubectl() -> Path:
    """kubectl from EGP_KUBE_BIN_DIR or the build cache (`make kube-bins`)."""
    env = os.environ.get("EGP_KUBE_BIN_DIR")
    if env:
        return Path(env) / "kubectl"
    found = subprocess.run(
        ["bash", str(REPO / "tools" / "kube" / "build.sh"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode != 0:
        pytest.skip("kubectl is not built: `make kube-bins` (make test does it)")
    return Path(found.stdout.strip().splitlines()[-1]) / "kubectl"


def _identities(documents: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (doc["kind"], doc["metadata"].get("namespace", ""), doc["metadata"]["name"])
        for doc in documents
    }


@pytest.mark.parametrize("root", KUSTOMIZATIONS.values(), ids=KUSTOMIZATIONS.keys())
def test_each_kustomization_renders_the_objects_its_files_hold(kubectl: Path, root: Path) -> None:
    rendered = kustomize(kubectl, root)

    assert _identities(rendered) == _identities(load(root))


def test_the_base_renders_the_image_users_can_set(kubectl: Path) -> None:
    deployment = one(kustomize(kubectl, DEPLOY), "Deployment")
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())

    assert kustomization["images"] == [
        {"name": "egp-operator", "newName": "egp-operator", "newTag": "latest"}
    ]
    assert [c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]] == [
        "egp-operator:latest"
    ]


def test_the_base_installs_every_crd_and_leaves_the_peering_to_the_operator() -> None:
    listed = yaml.safe_load((CRDS / "kustomization.yaml").read_text())["resources"]
    crds = [doc for doc in load(DEPLOY) if doc["kind"] == "CustomResourceDefinition"]

    assert sorted(listed) == sorted(
        p.name for p in CRDS.glob("*.yaml") if p.stem != "kustomization"
    )
    assert {crd["metadata"]["name"] for crd in crds} == {
        f"egpsources.{GROUP}",
        f"egpmodels.{GROUP}",
        "clusterkopfpeerings.kopf.dev",
        "kopfpeerings.kopf.dev",
    }
    # A custom resource applied with its CRD fails on a fresh cluster: the operator makes it.
    assert not [doc for doc in load(DEPLOY) if doc["kind"] == "ClusterKopfPeering"]


# ---- RBAC ------------------------------------------------------------------------------------


def test_no_cluster_role_grants_anything_on_secrets_or_wildcards(
    base: list[dict[str, Any]],
) -> None:
    cluster_roles = [doc for doc in base if doc["kind"] == "ClusterRole"]

    assert cluster_roles
    for role in cluster_roles:
        for group, resource, verb, _ in grants(role["rules"]):
            assert resource.split("/")[0] != "secrets", role["rules"]
            assert "*" not in (group, resource, verb), role["rules"]
    assert not [doc for doc in base if doc["kind"] in ("Role", "RoleBinding")]


def test_the_cluster_role_grants_exactly_what_the_operator_uses(base: list[dict[str, Any]]) -> None:
    role = one(base, "ClusterRole", "egp-operator")
    expected = {
        *((GROUP, "egpsources", v, "") for v in ("get", "list", "watch", "patch")),
        *((GROUP, "egpsources/status", v, "") for v in ("get", "patch")),
        *(
            (GROUP, "egpmodels", v, "")
            for v in ("get", "list", "watch", "create", "patch", "delete")
        ),
        *((GROUP, "egpmodels/status", v, "") for v in ("get", "patch")),
        ("", "events", "create", ""),
        ("kopf.dev", "clusterkopfpeerings", "list", ""),
        ("kopf.dev", "clusterkopfpeerings", "watch", ""),
        ("kopf.dev", "clusterkopfpeerings", "create", ""),
        ("kopf.dev", "clusterkopfpeerings", "patch", Settings().peering_name),
        ("kopf.dev", "kopfpeerings", "list", ""),
        ("apiextensions.k8s.io", "customresourcedefinitions", "list", ""),
        ("apiextensions.k8s.io", "customresourcedefinitions", "watch", ""),
        # /metrics: who is this token, and may they get /metrics?
        ("authentication.k8s.io", "tokenreviews", "create", ""),
        ("authorization.k8s.io", "subjectaccessreviews", "create", ""),
    }

    assert grants(role["rules"]) == expected


def test_the_metrics_reader_role_grants_get_on_metrics_and_nothing_else(
    base: list[dict[str, Any]],
) -> None:
    role = one(base, "ClusterRole", "egp-operator-metrics-reader")

    assert grants(role["rules"]) == {("", "/metrics", "get", "")}
    # deploy/ binds no one to it: who scrapes is the platform's choice (docs/install.md).
    assert [b["roleRef"]["name"] for b in base if b["kind"] == "ClusterRoleBinding"] == [
        "egp-operator"
    ]


def _service_account(base: list[dict[str, Any]]) -> dict[str, str]:
    account = one(base, "ServiceAccount")
    return {
        "kind": "ServiceAccount",
        "name": account["metadata"]["name"],
        "namespace": account["metadata"]["namespace"],
    }


def test_the_bindings_name_the_operators_service_account(
    base: list[dict[str, Any]], example: list[dict[str, Any]]
) -> None:
    deployment = one(base, "Deployment")
    binding = one(base, "ClusterRoleBinding")
    reader = one(example, "RoleBinding")

    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "egp-operator"
    assert binding["subjects"] == [_service_account(base)]
    assert (
        binding["roleRef"]["name"] == one(base, "ClusterRole", "egp-operator")["metadata"]["name"]
    )
    assert reader["subjects"] == [_service_account(base)]
    assert reader["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "egp-operator-secret-reader",
    }


def test_the_example_grants_get_and_watch_by_name_on_its_own_credentials_secret_only(
    example: list[dict[str, Any]],
) -> None:
    role = one(example, "Role", "egp-operator-secret-reader")
    secret = one(example, "Secret")
    source = one(example, "EGPSource")
    namespace = one(example, "Namespace")["metadata"]["name"]
    ref = EGPSourceSpec.model_validate(source["spec"]).credentials_secret_ref

    assert grants(role["rules"]) == {
        ("", "secrets", verb, secret["metadata"]["name"]) for verb in ("get", "list", "watch")
    }
    assert ref.name == secret["metadata"]["name"]
    assert secret["stringData"] == {ref.key: "REPLACE_ME"}
    assert {doc["metadata"]["namespace"] for doc in example if doc["kind"] != "Namespace"} == {
        namespace
    }
    assert source["apiVersion"] == f"{GROUP}/{VERSION}"


# ---- the Deployment ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pod(base: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = one(base, "Deployment")["spec"]["template"]["spec"]
    return spec


@pytest.fixture(scope="module")
def container(pod: dict[str, Any]) -> dict[str, Any]:
    (only,) = pod["containers"]
    result: dict[str, Any] = only
    return result


def test_one_replica_recreated_on_upgrade(base: list[dict[str, Any]]) -> None:
    spec = one(base, "Deployment")["spec"]

    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()


def test_the_pod_runs_locked_down(pod: dict[str, Any], container: dict[str, Any]) -> None:
    security = container["securityContext"]

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert isinstance(pod["securityContext"]["runAsUser"], int)
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert "privileged" not in security
    # The only writable place is an emptyDir at /tmp.
    tmp = "/tmp"  # noqa: S108 - the container's own /tmp, an emptyDir
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert list(mounts) == [tmp]
    assert "emptyDir" in volumes[mounts[tmp]]
    # Service links would inject EGP_OPERATOR_METRICS_PORT=tcp://... for the metrics Service.
    assert pod["enableServiceLinks"] is False


def test_ports_probes_and_settings_agree(container: dict[str, Any]) -> None:
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = {e["name"]: e["value"] for e in container["env"] if e["name"].startswith("EGP_OPERATOR_")}
    pod_id = next(e for e in container["env"] if e["name"] == "POD_ID")  # kopf's peering name
    assert pod_id["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    defaults = Settings()

    assert ports == {"metrics": defaults.metrics_port, "healthz": defaults.liveness_port}
    assert int(env["EGP_OPERATOR_METRICS_PORT"]) == ports["metrics"]
    assert int(env["EGP_OPERATOR_LIVENESS_PORT"]) == ports["healthz"]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "healthz"}, probe
    settings = {f"EGP_OPERATOR_{field.upper()}" for field in Settings.model_fields}
    assert set(env) <= settings, "env names a setting that does not exist"
    Settings.model_validate(
        {name.removeprefix("EGP_OPERATOR_").lower(): value for name, value in env.items()}
    )


def test_resources_are_requested_and_limited(container: dict[str, Any]) -> None:
    resources = container["resources"]

    assert set(resources["requests"]) == {"cpu", "memory"}
    assert set(resources["limits"]) == {"cpu", "memory"}


def test_the_metrics_service_and_service_monitor_reach_the_pod(
    base: list[dict[str, Any]], container: dict[str, Any]
) -> None:
    template_labels = one(base, "Deployment")["spec"]["template"]["metadata"]["labels"]
    service = one(base, "Service")
    monitor = one(load(MONITORING), "ServiceMonitor")

    assert service["spec"]["selector"].items() <= template_labels.items()
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["metrics"]
    assert "metrics" in {p["name"] for p in container["ports"]}
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["honorLabels"] is True  # the operator's `namespace` label must survive
    # /metrics asks for a bearer token: Prometheus's own ServiceAccount token.
    assert endpoint["bearerTokenFile"] == "/var/run/secrets/kubernetes.io/serviceaccount/token"


# ---- alerts ------------------------------------------------------------------------------------


def _alert_rules() -> Iterator[dict[str, Any]]:
    rule = one(load(MONITORING), "PrometheusRule")
    for group in rule["spec"]["groups"]:
        yield from group["rules"]


ALERTS = list(_alert_rules())
METRIC = re.compile(r"egp_operator_[a-z_]+")


@pytest.mark.parametrize("rule", ALERTS, ids=[rule["alert"] for rule in ALERTS])
def test_every_alert_uses_only_metrics_the_operator_exports(rule: dict[str, Any]) -> None:
    used = set(METRIC.findall(rule["expr"]))

    assert used, f"{rule['alert']} uses none of the operator's metrics"
    assert used <= metrics.exported_names(), used - metrics.exported_names()


@pytest.mark.parametrize("rule", ALERTS, ids=[rule["alert"] for rule in ALERTS])
def test_every_alert_says_how_bad_and_what_happened(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in ("info", "warning", "critical")
    assert rule["annotations"]["summary"]
    assert rule["annotations"]["description"]
    assert re.fullmatch(r"[0-9]+[smh]", rule["for"])


def test_the_promised_alerts_exist() -> None:
    by_name = {rule["alert"]: rule for rule in ALERTS}

    assert 'phase=~"Failed|DeploymentTimeout"' in by_name["EGPModelFailed"]["expr"]
    assert by_name["EGPModelFailed"]["for"] == "10m"
    assert 'phase="Deploying"' in by_name["EGPModelStuckDeploying"]["expr"]
    assert by_name["EGPModelStuckDeploying"]["for"] == "10m"
    # What they do is tested with promtool (tests/e2e/test_alert_rules.py).
    assert "egp_operator_source_refresh_interval_seconds" in by_name["EGPSourceNotSynced"]["expr"]
    assert "egp_operator_sync_errors_total" in by_name["EGPSyncErrors"]["expr"]


# ---- the Grafana dashboard ---------------------------------------------------------------------

DASHBOARD = json.loads((MONITORING / "grafana-dashboard.json").read_text())
QUERIED = re.compile(r"\b(?:egp_operator|kube_egp[a-z]+)_[a-z_]+")


def dashboard_queries() -> list[str]:
    """The PromQL expression of every panel of the dashboard."""
    panels = [panel for panel in DASHBOARD["panels"] if panel["type"] != "row"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


LABEL_VALUES = re.compile(r"label_values\((?P<selector>.+), *(?P<label>[a-z_]+)\)")


def dashboard_variables() -> dict[str, tuple[str, str]]:
    """Each query variable's Grafana `label_values(selector, label)`, by variable name."""
    found = {}
    for variable in DASHBOARD["templating"]["list"]:
        if variable["type"] == "query":
            parsed = LABEL_VALUES.fullmatch(variable["query"]["query"])
            assert parsed, variable["query"]["query"]
            found[variable["name"]] = (parsed["selector"], parsed["label"])
    return found


def kube_state_metrics_series() -> set[str]:
    config = yaml.safe_load((MONITORING / "kube-state-metrics-config.yaml").read_text())
    return {
        f"{resource['metricNamePrefix']}_{metric['name']}"
        for resource in config["spec"]["resources"]
        for metric in resource["metrics"]
    }


@pytest.mark.parametrize(
    "query", dashboard_queries() + [selector for selector, _ in dashboard_variables().values()]
)
def test_the_dashboard_queries_only_series_we_export(query: str) -> None:
    used = set(QUERIED.findall(query))
    ours = metrics.exported_names() | kube_state_metrics_series()

    assert used, f"queries none of our series: {query}"
    assert used <= ours, used - ours


def test_the_dashboard_covers_each_sources_sync_and_each_models_state() -> None:
    """Sync errors and durations and models by phase per source, per-model state from
    kube-state-metrics; every panel on the dashboard's data source."""
    queried = " ".join(dashboard_queries())
    for series in (
        "egp_operator_sync_errors_total",
        "egp_operator_sync_duration_seconds_bucket",
        "egp_operator_models",
        "egp_operator_last_successful_sync_timestamp_seconds",
        "kube_egpmodel_status_condition",
        "kube_egpmodel_status_phase",
    ):
        assert series in queried, series
    panels = [panel for panel in DASHBOARD["panels"] if panel["type"] != "row"]
    assert all(panel["datasource"]["uid"] == "${datasource}" for panel in panels)
    assert len({panel["id"] for panel in DASHBOARD["panels"]}) == len(DASHBOARD["panels"])
    assert set(dashboard_variables()) == {"namespace", "source"}


# ---- kube-state-metrics ------------------------------------------------------------


def test_the_kube_state_metrics_config_matches_the_crds() -> None:
    config = yaml.safe_load((MONITORING / "kube-state-metrics-config.yaml").read_text())
    resources = {r["groupVersionKind"]["kind"]: r for r in config["spec"]["resources"]}

    assert set(resources) == {"EGPModel", "EGPSource"}
    for resource in resources.values():
        assert resource["groupVersionKind"]["group"] == GROUP
        assert resource["groupVersionKind"]["version"] == VERSION
    metrics_of = {
        kind: {m["name"]: m["each"] for m in r["metrics"]} for kind, r in resources.items()
    }
    phase = metrics_of["EGPModel"]["status_phase"]["stateSet"]
    assert phase["path"] == ["status", "phase"]
    assert phase["list"] == list(PHASES)
    for kind in ("EGPModel", "EGPSource"):
        conditions = metrics_of[kind]["status_condition"]["gauge"]
        assert conditions["path"] == ["status", "conditions"]
        assert conditions["valueFrom"] == ["status"]


# ---- the image -------------------------------------------------------------------------------


def test_the_image_runs_the_operator_unprivileged_and_read_only() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    final_stage = dockerfile[dockerfile.rindex("\nFROM ") :]

    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", dockerfile, re.M)
    assert re.search(r"^USER [0-9]+:[0-9]+$", final_stage, re.M)
    assert 'ENTRYPOINT ["egp-operator", "run"]' in final_stage
    assert "PYTHONDONTWRITEBYTECODE=1" in final_stage
    assert "HOME=/tmp" in final_stage
    installs = re.findall(r"pip install ([^\\\n&]+)", dockerfile)
    assert [i.strip() for i in installs] == ["."], "the runtime package only: no extras, no URLs"
    patterns = [
        line for line in (REPO / ".dockerignore").read_text().splitlines() if line[:1] not in "#"
    ]
    assert patterns[0] == "*", "the build context is an allow-list"
    assert "!.cluster" not in patterns


# ---- the docs keep up --------------------------------------------------------------------------

DOCS = REPO / "docs"


def test_every_setting_spec_field_and_run_flag_is_documented() -> None:
    text = (DOCS / "configuration.md").read_text()
    run = next(
        action.choices["run"]
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    flags = {flag for action in run._actions for flag in action.option_strings} - {"-h", "--help"}
    fields = {
        field.alias or name
        for name, field in EGPSourceSpec.model_fields.items()
        if name != "credentials_secret_ref"
    } | {f"credentialsSecretRef.{key}" for key in SecretKeyRef.model_fields}

    for name in Settings.model_fields:
        assert f"`EGP_OPERATOR_{name.upper()}`" in text, name
    for field in fields:
        assert f"| `{field}` |" in text, field
    for flag in flags:
        assert f"run {flag}" in text, flag


def test_every_reason_phase_and_event_is_explained() -> None:
    """Every word of vocabulary.Reason, every phase, condition type and alert has its entry in
    docs/troubleshooting.md; the code can write no reason that is not in the enum."""
    text = (DOCS / "troubleshooting.md").read_text()
    reasons = {str(reason) for reason in Reason} | set(CONDITION_TYPES)

    for word in reasons | set(PHASES) | {rule["alert"] for rule in ALERTS}:
        assert f"`{word}`" in text, word
    for name in metrics.exported_names():
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert f"`{family}`" in text, family
