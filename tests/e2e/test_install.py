"""What `kubectl apply -k deploy/` installs, on the real API server: the whole kustomization
passes a server-side dry run, and the operator, run with nothing but the ServiceAccount token
and the RBAC of deploy/ (plus the example's secret-reader Role), mirrors an EGP account.

No operator fixture here: the operator under test runs as the ServiceAccount, cluster-wide as
the Deployment runs it, with a peering priority above any other replica's (which pauses one
that might run, so that what is asserted is this one's doing).
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client

from egp_operator.resources.models import GROUP, MODEL_PLURAL, SOURCE_PLURAL, VERSION
from egp_operator.testing.cluster import LocalControlPlane
from egp_operator.testing.fake_egp import FakeEGPServer, generate_models
from tests.e2e.harness import EGP_ACCOUNT, EGP_KEY, OperatorProcess
from tests.e2e.polling import eventually

REPO = Path(__file__).parents[2]
DEPLOY = REPO / "deploy"
EXAMPLES = DEPLOY / "examples"
BASE_NAMESPACE = "egp-operator-system"
EXAMPLE_NAMESPACE = "egp-models"
SERVICE_ACCOUNT = "egp-operator"
SECRET = "egp-credentials"
SOURCE = "egp"
PEERING = "egp-operator"
# Above the random priorities (1 .. 2**30) other replicas pick: they pause while this one runs.
TOP_PRIORITY = 2**31
RBAC_KINDS = {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"}


def kubectl(
    bin_dir: Path, kubeconfig: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir / "kubectl"), "--kubeconfig", str(kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def render(bin_dir: Path, path: Path) -> list[dict[str, Any]]:
    built = subprocess.run(
        [str(bin_dir / "kubectl"), "kustomize", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [doc for doc in yaml.safe_load_all(built.stdout) if doc]


def apply(bin_dir: Path, kubeconfig: Path, documents: list[dict[str, Any]]) -> None:
    applied = kubectl(
        bin_dir,
        kubeconfig,
        "apply",
        "--server-side",
        "--field-manager=egp-e2e",
        "-f",
        "-",
        stdin=yaml.safe_dump_all(documents),
    )
    assert applied.returncode == 0, applied.stderr


# ---- the whole kustomization -----------------------------------------------------------------


@pytest.fixture(scope="module")
def install_namespaces(kube_bin_dir: Path, control_plane: LocalControlPlane) -> Iterator[None]:
    """The namespaces deploy/ and deploy/examples create, made for real: a dry run creates
    nothing, so without them every namespaced object's dry run would fail NotFound."""
    namespaces = [
        doc
        for path in (DEPLOY, EXAMPLES)
        for doc in render(kube_bin_dir, path)
        if doc["kind"] == "Namespace"
    ]
    assert {doc["metadata"]["name"] for doc in namespaces} == {BASE_NAMESPACE, EXAMPLE_NAMESPACE}
    apply(kube_bin_dir, control_plane.kubeconfig, namespaces)
    yield
    with control_plane.api_client() as api:
        for doc in namespaces:
            client.CoreV1Api(api).delete_namespace(doc["metadata"]["name"])


@pytest.mark.usefixtures("crds_installed", "install_namespaces")
@pytest.mark.parametrize("path", [DEPLOY, EXAMPLES], ids=["deploy", "examples"])
def test_the_kustomization_passes_a_server_side_dry_run(
    kube_bin_dir: Path, control_plane: LocalControlPlane, path: Path
) -> None:
    expected = render(kube_bin_dir, path)

    dry_run = kubectl(
        kube_bin_dir,
        control_plane.kubeconfig,
        "apply",
        "--server-side",
        "--force-conflicts",
        "--dry-run=server",
        "-k",
        str(path),
    )

    assert dry_run.returncode == 0, dry_run.stderr
    accepted = [line for line in dry_run.stdout.splitlines() if "(server dry run)" in line]
    assert len(accepted) == len(expected), dry_run.stdout
    # The base's namespace enforces the "restricted" Pod Security Standard; the Deployment's
    # pod template must meet it (the API server warns on a workload that would not).
    assert "PodSecurity" not in dry_run.stderr


# ---- the ServiceAccount and its RBAC ---------------------------------------------------------


@dataclass
class Installed:
    """The RBAC of deploy/ and deploy/examples, applied with namespaces and cluster-scoped
    names of its own, and a kubeconfig that logs in as the operator's ServiceAccount."""

    operator_namespace: str  # deploy/'s egp-operator-system
    served_namespace: str  # deploy/examples' egp-models
    other_namespace: str  # one that granted the operator nothing
    kubeconfig: Path
    examples: dict[str, dict[str, Any]]  # the example's Secret and EGPSource, by kind


def _rename(documents: list[dict[str, Any]], names: dict[str, str], suffix: str) -> None:
    """Move the documents to the test's namespaces, and suffix cluster-scoped names."""
    for doc in documents:
        meta = doc["metadata"]
        if doc["kind"] == "Namespace":
            meta["name"] = names[meta["name"]]
        if "namespace" in meta:
            meta["namespace"] = names[meta["namespace"]]
        if doc["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            meta["name"] = f"{meta['name']}-{suffix}"
        if doc["kind"] == "ClusterRoleBinding":
            doc["roleRef"]["name"] = f"{doc['roleRef']['name']}-{suffix}"
        for subject in doc.get("subjects", []):
            subject["namespace"] = names[subject["namespace"]]


def _service_account_kubeconfig(
    api: Any, control_plane: LocalControlPlane, namespace: str, path: Path
) -> Path:
    """A kubeconfig with a token of the ServiceAccount, minted by the TokenRequest API as the
    kubelet does for a pod."""
    answer = client.CoreV1Api(api).create_namespaced_service_account_token(
        SERVICE_ACCOUNT,
        namespace,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
        ),
    )
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {
                    "server": control_plane.server,
                    "certificate-authority": str(control_plane.ca_file),
                },
            }
        ],
        "users": [{"name": SERVICE_ACCOUNT, "user": {"token": answer.status.token}}],
        "contexts": [
            {"name": SERVICE_ACCOUNT, "context": {"cluster": "local", "user": SERVICE_ACCOUNT}}
        ],
        "current-context": SERVICE_ACCOUNT,
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def installed(
    kube_bin_dir: Path,
    control_plane: LocalControlPlane,
    crds_installed: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Installed]:
    suffix = uuid.uuid4().hex[:6]
    names = {
        BASE_NAMESPACE: f"egp-operator-{suffix}",
        EXAMPLE_NAMESPACE: f"egp-models-{suffix}",
    }
    other = f"e2e-other-{suffix}"
    base = [doc for doc in render(kube_bin_dir, DEPLOY) if doc["kind"] in RBAC_KINDS]
    assert {doc["kind"] for doc in base} == RBAC_KINDS
    example = render(kube_bin_dir, EXAMPLES)
    access = [doc for doc in example if doc["kind"] in ("Namespace", "Role", "RoleBinding")]
    _rename(base + example, names, suffix)  # `access` is part of `example`
    examples = {doc["kind"]: doc for doc in example if doc["kind"] in ("Secret", "EGPSource")}

    kubeconfig = control_plane.kubeconfig
    apply(kube_bin_dir, kubeconfig, base)
    apply(kube_bin_dir, kubeconfig, access)
    with control_plane.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=other)))
        for namespace in (other, names[BASE_NAMESPACE]):  # Secrets the operator may not read
            core.create_namespaced_secret(
                namespace,
                client.V1Secret(
                    metadata=client.V1ObjectMeta(name=SECRET), string_data={"apiKey": "x"}
                ),
            )
        core.create_namespaced_secret(
            names[EXAMPLE_NAMESPACE],
            client.V1Secret(metadata=client.V1ObjectMeta(name="unrelated"), string_data={"k": "x"}),
        )
        token_config = _service_account_kubeconfig(
            api,
            control_plane,
            names[BASE_NAMESPACE],
            tmp_path_factory.mktemp("sa") / "kubeconfig",
        )
    try:
        yield Installed(
            names[BASE_NAMESPACE], names[EXAMPLE_NAMESPACE], other, token_config, examples
        )
    finally:
        with control_plane.api_client() as api:
            rbac = client.RbacAuthorizationV1Api(api)
            rbac.delete_cluster_role_binding(f"egp-operator-{suffix}")
            rbac.delete_cluster_role(f"egp-operator-{suffix}")
            for namespace in (*names.values(), other):
                client.CoreV1Api(api).delete_namespace(namespace)


SERVED, OPERATOR, OTHER, CLUSTER = "served", "operator", "other", "cluster"
EGPSOURCES = f"egpsources.{GROUP}"
EGPMODELS = f"egpmodels.{GROUP}"
PEERINGS = "clusterkopfpeerings.kopf.dev"


@pytest.mark.parametrize(
    ("verb", "resource", "where", "allowed"),
    [
        # Secrets: the named credentials of a namespace that granted them, nothing else.
        ("get", f"secrets/{SECRET}", SERVED, True),
        ("get", "secrets/unrelated", SERVED, False),
        ("list", "secrets", SERVED, False),
        ("watch", "secrets", SERVED, False),
        ("get", f"secrets/{SECRET}", OTHER, False),
        ("get", f"secrets/{SECRET}", OPERATOR, False),
        ("list", "secrets", CLUSTER, False),
        # EGPSources: read, patch (kopf's finalizer and annotations) and status; no more.
        ("watch", EGPSOURCES, CLUSTER, True),
        ("patch", EGPSOURCES, SERVED, True),
        ("patch", f"{EGPSOURCES}/status", SERVED, True),
        ("update", EGPSOURCES, SERVED, False),
        ("create", EGPSOURCES, SERVED, False),
        ("delete", EGPSOURCES, SERVED, False),
        # EGPModels: the mirror.
        ("watch", EGPMODELS, CLUSTER, True),
        ("create", EGPMODELS, SERVED, True),
        ("patch", EGPMODELS, SERVED, True),
        ("patch", f"{EGPMODELS}/status", SERVED, True),
        ("delete", EGPMODELS, SERVED, True),
        ("update", EGPMODELS, SERVED, False),
        ("deletecollection", EGPMODELS, SERVED, False),
        # Events: created, never read or changed.
        ("create", "events", SERVED, True),
        ("list", "events", SERVED, False),
        ("delete", "events", SERVED, False),
        # Peering: its own ClusterKopfPeering only.
        ("watch", PEERINGS, CLUSTER, True),
        ("patch", f"{PEERINGS}/{PEERING}", CLUSTER, True),
        ("patch", f"{PEERINGS}/another", CLUSTER, False),
        ("create", PEERINGS, CLUSTER, False),
        ("watch", "customresourcedefinitions.apiextensions.k8s.io", CLUSTER, True),
        ("create", "customresourcedefinitions.apiextensions.k8s.io", CLUSTER, False),
        # Nothing of what a workload or an attacker would want.
        ("create", "pods", SERVED, False),
        ("delete", "pods", SERVED, False),
        ("create", "pods/exec", SERVED, False),
        ("create", "deployments.apps", SERVED, False),
        ("create", "configmaps", SERVED, False),
        ("get", "configmaps", SERVED, False),
        ("create", "serviceaccounts/token", OPERATOR, False),
        ("list", "namespaces", CLUSTER, False),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io", CLUSTER, False),
        ("create", "rolebindings.rbac.authorization.k8s.io", SERVED, False),
        ("impersonate", "serviceaccounts", CLUSTER, False),
        ("*", "*", SERVED, False),
    ],
)
def test_the_service_account_may_do_what_the_operator_needs_and_nothing_else(
    kube_bin_dir: Path, installed: Installed, verb: str, resource: str, where: str, allowed: bool
) -> None:
    namespace = {
        SERVED: ["-n", installed.served_namespace],
        OPERATOR: ["-n", installed.operator_namespace],
        OTHER: ["-n", installed.other_namespace],
        CLUSTER: ["--all-namespaces"],
    }[where]
    kind, _, sub = resource.partition("/")
    # `TYPE/NAME` names an object, except for the subresources asked about here.
    subresource = ["--subresource", sub] if sub in ("status", "exec", "token") else []
    target = kind if subresource else resource

    answer = kubectl(
        kube_bin_dir, installed.kubeconfig, "auth", "can-i", verb, target, *subresource, *namespace
    )

    assert answer.stdout.strip() == ("yes" if allowed else "no"), answer.stderr


# ---- the operator as its ServiceAccount ------------------------------------------------------


def _peer_priorities(custom: Any) -> list[int]:
    peering = custom.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", PEERING)
    return [peer.get("priority", 0) for peer in (peering.get("status") or {}).values() if peer]


def _metric_lines(url: str, namespace: str) -> list[str]:
    body = httpx.get(url, timeout=5).text
    return [line for line in body.splitlines() if f'namespace="{namespace}"' in line]


@pytest.mark.usefixtures("peering")
def test_the_operator_mirrors_an_account_with_only_the_deployed_rbac(
    kube_bin_dir: Path,
    control_plane: LocalControlPlane,
    installed: Installed,
    api: Any,
    tmp_path: Path,
) -> None:
    served = installed.served_namespace
    core, objects = client.CoreV1Api(api), client.CustomObjectsApi(api)
    upstream = generate_models(6, seed=31)
    with FakeEGPServer(api_key=EGP_KEY, account_id=EGP_ACCOUNT) as egp:
        egp.add_models(upstream)
        operator = OperatorProcess(
            installed.kubeconfig,
            tmp_path / "operator.log",
            status_heartbeat_seconds="3600",
            priority=str(TOP_PRIORITY),
        )
        try:
            eventually(
                lambda: TOP_PRIORITY in _peer_priorities(objects),
                timeout=60,
                what="the operator to join the ClusterKopfPeering",
            )
            secret, source = installed.examples["Secret"], installed.examples["EGPSource"]
            secret["stringData"] = {"apiKey": EGP_KEY}
            source["spec"] |= {
                "baseURL": egp.url,
                "accountID": EGP_ACCOUNT,
                "refreshInterval": "10s",
            }
            apply(kube_bin_dir, control_plane.kubeconfig, [secret, source])

            marker = f"cycle of EGPSource {served}/{SOURCE}: Synced"
            eventually(
                lambda: marker in operator.log(), timeout=90, what="a Synced cycle as the SA"
            )
            models = objects.list_namespaced_custom_object(GROUP, VERSION, served, MODEL_PLURAL)
            assert {m["spec"]["modelID"] for m in models["items"]} == {m["id"] for m in upstream}
            assert all(m["status"]["phase"] for m in models["items"])
            status = objects.get_namespaced_custom_object(
                GROUP, VERSION, served, SOURCE_PLURAL, SOURCE
            )
            conditions = {c["type"]: c for c in status["status"]["conditions"]}
            assert conditions["Ready"]["status"] == conditions["Synced"]["status"] == "True"
            assert f"{GROUP}/finalizer" in status["metadata"].get("finalizers", [])
            exported = _metric_lines(operator.metrics_url, served)
            assert any(line.startswith("egp_operator_models{") for line in exported)
            assert any(
                line.startswith("egp_operator_last_successful_sync_timestamp_seconds{")
                for line in exported
            )

            # Events need a phase change: the next cycle sees one and posts it.
            changed = upstream[0]
            egp.update_model(changed["id"], status="failed", status_reason="OOMKilled")
            eventually(
                lambda: any(
                    e.reason == "Failed"
                    for e in core.list_namespaced_event(served).items
                    if e.involved_object.kind == "EGPModel"
                ),
                timeout=60,
                what="a Failed Event posted by the SA",
            )

            # Deleting the source needs kopf's finalizer removed by the operator (a patch).
            objects.delete_namespaced_custom_object(GROUP, VERSION, served, SOURCE_PLURAL, SOURCE)
            eventually(
                lambda: (
                    not objects.list_namespaced_custom_object(
                        GROUP, VERSION, served, SOURCE_PLURAL
                    )["items"]
                ),
                timeout=60,
                what="the EGPSource's finalizer to be released",
            )
        finally:
            operator.stop()
            print(operator.log()[-5000:])
    log = operator.log()
    denied = [
        line
        for line in log.splitlines()
        if "Not enough permissions" in line
        or "APIForbiddenError" in line
        or (served in line and ("Forbidden" in line or "403" in line))
    ]
    assert not denied, "\n".join(denied)
