"""What `kubectl apply -k deploy/` installs, on a real API server: the whole kustomization
passes a server-side dry run; one apply installs the base on a fresh cluster; and the operator,
run with nothing but the ServiceAccount's token and the RBAC of deploy/ (plus the example's
secret-reader Role), mirrors an EGP account, while `kubectl auth can-i` shows what else it may
not do.

The install tests use a control plane of their own, started for this module: nothing else is
installed there (no CRDs before the apply, no other operator, no other test's EGPSources), so
the shipped names are used as they are and whatever happens there is this operator's doing.
"""

from __future__ import annotations

import asyncio
import collections
import json
import secrets
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import yaml
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from egp_operator.metrics_server import REVIEW_BURST, REVIEW_RATE
from egp_operator.resources.models import GROUP, MODEL_PLURAL, SOURCE_PLURAL, VERSION
from egp_testbench.cluster import LocalControlPlane
from egp_testbench.fake_egp import FakeEGPServer, generate_models
from egp_testbench.processes import free_ports
from tests.e2e.container import (
    IMAGE_USER,
    PodContainer,
    ServiceAccountFiles,
    image_name,
    podman,
    run_in_image,
    uids_of,
)
from tests.e2e.harness import (
    EGP_ACCOUNT,
    EGP_KEY,
    OperatorProcess,
    metrics_reader_token,
    metrics_text,
    service_account_kubeconfig,
    service_account_token,
    source_body,
)
from tests.e2e.polling import eventually
from tests.manifests import kustomize

REPO = Path(__file__).parents[2]
DEPLOY = REPO / "deploy"
CRDS = REPO / "crds"
EXAMPLES = DEPLOY / "examples"
BASE_NAMESPACE = "egp-operator-system"
EXAMPLE_NAMESPACE = "egp-models"
SERVICE_ACCOUNT = "egp-operator"
SECRET = "egp-credentials"
SOURCE = "egp"
PEERING = "egp-operator"


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
        for doc in kustomize(kube_bin_dir / "kubectl", path)
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
    expected = kustomize(kube_bin_dir / "kubectl", path)

    dry_run = kubectl(
        kube_bin_dir,
        control_plane.kubeconfig,
        "apply",
        "--server-side",
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


# ---- a fresh cluster, installed as the docs say ----------------------------------------------


@dataclass
class Installed:
    """A cluster of its own where deploy/ was installed first thing, and the example
    namespace's Secret, Role and RoleBinding were applied after it, with names as shipped; and
    a kubeconfig that logs in as the operator's ServiceAccount."""

    cluster: LocalControlPlane
    first_apply: subprocess.CompletedProcess[str]  # `apply -k deploy/` on the fresh cluster
    base: list[dict[str, Any]]
    example: list[dict[str, Any]]
    other_namespace: str  # one that granted the operator nothing
    kubeconfig: Path  # the ServiceAccount's
    metrics_token: str  # of a ServiceAccount bound to egp-operator-metrics-reader, as Prometheus


@pytest.fixture(scope="module")
def installed(kube_bin_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """Its own control plane, so that nothing else is installed there (no CRDs yet, no other
    operator, no other test's objects) and the shipped names can be used as they are. The base
    is installed as docs/install.md says."""
    other = "elsewhere"
    with LocalControlPlane(kube_bin_dir, tmp_path_factory.mktemp("install-cluster")) as cluster:
        config = cluster.kubeconfig
        # What design.md promises first: one command.
        first = kubectl(kube_bin_dir, config, "apply", "--server-side", "-k", str(DEPLOY))
        # The documented first install: the CRDs, established, then everything.
        crds = kubectl(kube_bin_dir, config, "apply", "--server-side", "-k", str(CRDS))
        assert crds.returncode == 0, crds.stderr
        established = kubectl(
            kube_bin_dir,
            config,
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "-f",
            "-",
            stdin=yaml.safe_dump_all(kustomize(kube_bin_dir / "kubectl", CRDS)),
        )
        assert established.returncode == 0, established.stderr
        applied = kubectl(kube_bin_dir, config, "apply", "--server-side", "-k", str(DEPLOY))
        assert applied.returncode == 0, applied.stderr

        example = kustomize(kube_bin_dir / "kubectl", EXAMPLES)
        access = [doc for doc in example if doc["kind"] in ("Namespace", "Role", "RoleBinding")]
        secret = next(doc for doc in example if doc["kind"] == "Secret")
        secret["stringData"] = {"apiKey": EGP_KEY}  # what the user puts instead of REPLACE_ME
        apply(kube_bin_dir, config, [*access, secret])
        with cluster.api_client() as api:
            core = client.CoreV1Api(api)
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=other)))
            for namespace, name in (
                (other, SECRET),  # the same name elsewhere
                (BASE_NAMESPACE, SECRET),
                (EXAMPLE_NAMESPACE, "unrelated"),  # another Secret beside the granted one
            ):
                core.create_namespaced_secret(
                    namespace,
                    client.V1Secret(
                        metadata=client.V1ObjectMeta(name=name), string_data={"apiKey": "x"}
                    ),
                )
        token_config = service_account_kubeconfig(
            cluster, BASE_NAMESPACE, SERVICE_ACCOUNT, tmp_path_factory.mktemp("sa") / "kubeconfig"
        )
        yield Installed(
            cluster,
            first,
            kustomize(kube_bin_dir / "kubectl", DEPLOY),
            example,
            other,
            token_config,
            metrics_reader_token(cluster, "monitoring", "prometheus"),
        )


def test_one_kubectl_apply_installs_everything_on_a_fresh_cluster(
    kube_bin_dir: Path, installed: Installed
) -> None:
    first = installed.first_apply
    assert first.returncode == 0, first.stderr
    for doc in installed.base:
        meta = doc["metadata"]
        where = ["-n", meta["namespace"]] if "namespace" in meta else []
        found = kubectl(
            kube_bin_dir,
            installed.cluster.kubeconfig,
            "get",
            doc["kind"],
            meta["name"],
            *where,
            "-o",
            "name",
        )
        assert found.returncode == 0, found.stderr


SERVED, OPERATOR, OTHER, CLUSTER = "served", "operator", "other", "cluster"
EGPSOURCES = f"egpsources.{GROUP}"
EGPMODELS = f"egpmodels.{GROUP}"
PEERINGS = "clusterkopfpeerings.kopf.dev"


@pytest.mark.parametrize(
    ("verb", "resource", "where", "allowed"),
    [
        # Secrets: the named credentials of a namespace that granted them, nothing else.
        ("get", f"secrets/{SECRET}", SERVED, True),
        ("list", f"secrets/{SECRET}", SERVED, True),  # with its name's field selector only
        ("watch", f"secrets/{SECRET}", SERVED, True),
        ("get", "secrets/unrelated", SERVED, False),
        ("watch", "secrets/unrelated", SERVED, False),
        ("list", "secrets", SERVED, False),
        ("watch", "secrets", SERVED, False),
        ("watch", f"secrets/{SECRET}", OTHER, False),
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
        ("create", PEERINGS, CLUSTER, True),  # made at startup when missing
        ("list", "kopfpeerings.kopf.dev", CLUSTER, True),  # shards serving a namespace
        ("patch", "kopfpeerings.kopf.dev", SERVED, False),
        ("watch", "customresourcedefinitions.apiextensions.k8s.io", CLUSTER, True),
        ("create", "customresourcedefinitions.apiextensions.k8s.io", CLUSTER, False),
        # /metrics: ask the API server about a caller's token, and nothing more about anyone.
        ("create", "tokenreviews.authentication.k8s.io", CLUSTER, True),
        ("create", "subjectaccessreviews.authorization.k8s.io", CLUSTER, True),
        ("create", "localsubjectaccessreviews.authorization.k8s.io", SERVED, False),
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
        SERVED: ["-n", EXAMPLE_NAMESPACE],
        OPERATOR: ["-n", BASE_NAMESPACE],
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
    assert "Warning" not in answer.stderr  # e.g. a resource type the server does not know


@pytest.mark.parametrize(
    ("selector", "namespace", "allowed"),
    [
        (f"metadata.name={SECRET}", SERVED, True),
        ("metadata.name=unrelated", SERVED, False),
        ("", SERVED, False),
        ("metadata.namespace=" + EXAMPLE_NAMESPACE, SERVED, False),
        (f"metadata.name={SECRET}", OTHER, False),
    ],
    ids=["its-name", "another-name", "no-selector", "another-selector", "another-namespace"],
)
def test_the_service_account_watches_its_named_secret_and_no_other(
    kube_bin_dir: Path, installed: Installed, selector: str, namespace: str, allowed: bool
) -> None:
    """The watch the operator opens, sent as its ServiceAccount: RBAC's resourceNames allow a
    list or watch only when the field selector names that one Secret."""
    where = {SERVED: EXAMPLE_NAMESPACE, OTHER: installed.other_namespace}[namespace]
    query = "watch=true&timeoutSeconds=1"
    if selector:
        query += f"&fieldSelector={quote(selector)}"
    for request in (query, query.replace("watch=true&", "")):  # the watch, and its list
        answer = kubectl(
            kube_bin_dir,
            installed.kubeconfig,
            "get",
            "--raw",
            f"/api/v1/namespaces/{where}/secrets?{request}",
        )
        assert (answer.returncode == 0) == allowed, (request, answer.stderr)
        if not allowed:
            assert "Forbidden" in answer.stderr or "forbidden" in answer.stderr


# ---- the operator as its ServiceAccount ------------------------------------------------------


def _metric_lines(operator: OperatorProcess, token: str, namespace: str) -> list[str]:
    body = metrics_text(operator, token)
    return [line for line in body.splitlines() if f'namespace="{namespace}"' in line]


def test_the_operator_mirrors_an_account_with_only_the_deployed_rbac(
    kube_bin_dir: Path, installed: Installed, tmp_path: Path
) -> None:
    upstream = generate_models(6, seed=31)
    with (
        installed.cluster.api_client() as api,
        FakeEGPServer(api_key=EGP_KEY, account_id=EGP_ACCOUNT) as egp,
    ):
        core, objects = client.CoreV1Api(api), client.CustomObjectsApi(api)
        egp.add_models(upstream)
        # As the Deployment runs it: cluster-wide, logged in as the ServiceAccount only.
        operator = OperatorProcess(
            installed.kubeconfig, tmp_path / "operator.log", status_heartbeat_seconds="3600"
        )
        try:
            source = next(doc for doc in installed.example if doc["kind"] == "EGPSource")
            source["spec"] |= {
                "baseURL": egp.url,
                "accountID": EGP_ACCOUNT,
                "refreshInterval": "10s",
            }
            apply(kube_bin_dir, installed.cluster.kubeconfig, [source])

            marker = f"cycle of EGPSource {EXAMPLE_NAMESPACE}/{SOURCE}: Synced"
            eventually(
                lambda: marker in operator.log(), timeout=90, what="a Synced cycle as the SA"
            )
            models = objects.list_namespaced_custom_object(
                GROUP, VERSION, EXAMPLE_NAMESPACE, MODEL_PLURAL
            )["items"]
            assert {m["spec"]["modelID"] for m in models} == {m["id"] for m in upstream}
            assert all(m["status"]["phase"] for m in models)
            status = objects.get_namespaced_custom_object(
                GROUP, VERSION, EXAMPLE_NAMESPACE, SOURCE_PLURAL, SOURCE
            )
            conditions = {c["type"]: c for c in status["status"]["conditions"]}
            assert conditions["Ready"]["status"] == conditions["Synced"]["status"] == "True"
            assert f"{GROUP}/finalizer" in status["metadata"].get("finalizers", [])
            exported = _metric_lines(operator, installed.metrics_token, EXAMPLE_NAMESPACE)
            for name in (
                "egp_operator_models",
                "egp_operator_last_successful_sync_timestamp_seconds",
            ):
                assert any(line.startswith(name + "{") for line in exported), name

            # Events come with phase changes: the next cycle sees one and posts it.
            egp.update_model(upstream[0]["id"], status="failed", status_reason="OOMKilled")
            eventually(
                lambda: any(
                    e.reason == "Failed" and e.involved_object.kind == "EGPModel"
                    for e in core.list_namespaced_event(EXAMPLE_NAMESPACE).items
                ),
                timeout=60,
                what="a Failed Event posted by the SA",
            )

            # The first step of uninstalling: the operator releases kopf's finalizer (a patch),
            # and garbage collection takes the EGPModels.
            deleted = kubectl(
                kube_bin_dir,
                installed.cluster.kubeconfig,
                "delete",
                "egpsources",
                "--all",
                "--all-namespaces",
                "--wait",
                "--timeout=60s",
            )
            assert deleted.returncode == 0, deleted.stderr
            eventually(
                lambda: (
                    not objects.list_namespaced_custom_object(
                        GROUP, VERSION, EXAMPLE_NAMESPACE, MODEL_PLURAL
                    )["items"]
                ),
                timeout=60,
                what="the EGPModels to be garbage collected",
            )
        finally:
            operator.stop()
            print(operator.log()[-5000:])
    denied = [
        line
        for line in operator.log().splitlines()
        if "Not enough permissions" in line
        or "APIForbiddenError" in line
        or "Forbidden" in line
        or " 403 " in line
    ]
    assert not denied, "\n".join(denied)


# ---- who may read /metrics -------------------------------------------------------------------

FLOOD = 300


def _reviews_received(cluster: LocalControlPlane) -> float:
    """TokenReviews the API server has answered so far, from its own /metrics."""
    answer = httpx.get(
        f"{cluster.server}/metrics",
        headers={"Authorization": f"Bearer {cluster.admin_token}"},
        verify=ssl.create_default_context(cafile=str(cluster.ca_file)),
        timeout=10,
    )
    answer.raise_for_status()
    return sum(
        sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
        if sample.name == "apiserver_request_total"
        and sample.labels.get("resource") == "tokenreviews"
    )


async def _flood(url: str, count: int) -> list[int]:
    """`count` scrapes at once, each with a token of its own that means nothing."""
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=50)) as http:
        answers = await asyncio.gather(
            *(
                http.get(url, headers={"Authorization": f"Bearer {secrets.token_urlsafe(32)}"})
                for _ in range(count)
            )
        )
    return [answer.status_code for answer in answers]


def test_metrics_are_served_only_to_whom_the_api_server_allows(
    installed: Installed, tmp_path: Path
) -> None:
    """The operator as its ServiceAccount, with deploy/'s RBAC: no token is 401, a token of a
    ServiceAccount without egp-operator-metrics-reader is 403, Prometheus's is served; a flood
    of made-up tokens makes a bounded number of TokenReviews, and does not lock Prometheus
    out."""
    cluster = installed.cluster
    with cluster.api_client() as api:
        client.CoreV1Api(api).create_namespaced_service_account(
            EXAMPLE_NAMESPACE, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="nosy"))
        )
    nosy = service_account_token(cluster, EXAMPLE_NAMESPACE, "nosy")
    operator = OperatorProcess(
        installed.kubeconfig, tmp_path / "operator.log", status_heartbeat_seconds="3600"
    )
    url = operator.metrics_url

    def get(token: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(url, headers=headers, timeout=10)

    def answering() -> bool:
        try:
            get()
        except httpx.TransportError:
            return False
        return True

    try:
        eventually(answering, timeout=60, what="the operator's /metrics to answer")
        anonymous, made_up, stranger = get(), get("not-a-token"), get(nosy)
        reader = get(installed.metrics_token)

        before, started = _reviews_received(cluster), time.monotonic()
        statuses = asyncio.run(_flood(url, FLOOD))
        elapsed = time.monotonic() - started
        sent = _reviews_received(cluster) - before
        after_flood = get(installed.metrics_token)
    finally:
        operator.stop()
        print(operator.log()[-3000:])

    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert made_up.status_code == 401
    assert stranger.status_code == 403
    assert "system:serviceaccount:egp-models:nosy may not get /metrics" in stranger.text
    for refused in (anonymous, made_up, stranger):
        assert "egp_operator_" not in refused.text
    assert reader.status_code == 200
    assert "egp_operator_kubernetes_requests_total" in reader.text
    # The flood: at most the budget's burst and its refill over the flood's duration reach
    # the API server; every other request is told to come back later, unasked.
    bound = REVIEW_BURST + REVIEW_RATE * elapsed + 1
    answered = dict(sorted(collections.Counter(statuses).items()))
    print(f"FLOOD {FLOOD} made-up tokens in {elapsed:.2f} s: {sent:g} TokenReviews, {answered}")
    assert sent <= bound
    assert set(statuses) <= {401, 429}
    assert statuses.count(429) >= FLOOD - bound
    assert after_flood.status_code == 200  # Prometheus, already allowed, is not locked out
    log = operator.log()
    for token in (installed.metrics_token, nosy):
        assert token not in log
    denied = [line for line in log.splitlines() if "Forbidden" in line or " 403 " in line]
    assert not denied, "\n".join(denied)


# ---- tenants who do not trust each other -----------------------------------------------------

TEAM_A, TEAM_B = "team-a", "team-b"
KEY_A, KEY_B = "sk-team-a-0c4f9e21", "sk-team-b-7d13a5b8"
#: Ways a tenant of team-a might spell team-b's Secret in credentialsSecretRef.name.
TRAVERSALS = [
    f"../../{TEAM_B}/secrets/{SECRET}",
    f"..%2F..%2F{TEAM_B}%2Fsecrets%2F{SECRET}",
    f"%2e%2e/%2e%2e/{TEAM_B}/secrets/{SECRET}",
    f"{SECRET}/../../../{TEAM_B}/secrets/{SECRET}",
    f"..\\..\\{TEAM_B}\\secrets\\{SECRET}",
    f"{TEAM_B}/{SECRET}",
    "..",
    f"{SECRET}?namespace={TEAM_B}",
    f"{SECRET}\n",
]


def _tenant(bin_dir: Path, installed: Installed, namespace: str, api_key: str) -> None:
    """A namespace as the example makes it: a Secret, and a Role that lets the operator `get`
    that Secret only."""
    documents = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}]
    for doc in installed.example:
        if doc["kind"] in ("Role", "RoleBinding", "Secret"):
            copy = yaml.safe_load(yaml.safe_dump(doc))
            copy["metadata"]["namespace"] = namespace
            if doc["kind"] == "Secret":
                copy["stringData"] = {"apiKey": api_key}
            documents.append(copy)
    apply(bin_dir, installed.cluster.kubeconfig, documents)


def _source(namespace: str, name: str, base_url: str, secret: str = SECRET) -> dict[str, Any]:
    return source_body(namespace, name, base_url, secret=secret, accountID=EGP_ACCOUNT)


def test_a_tenant_can_never_get_another_namespaces_key_sent_anywhere(
    kube_bin_dir: Path, installed: Installed, tmp_path: Path
) -> None:
    _tenant(kube_bin_dir, installed, TEAM_A, KEY_A)
    _tenant(kube_bin_dir, installed, TEAM_B, KEY_B)
    with (
        installed.cluster.api_client() as api,
        FakeEGPServer(api_key=KEY_A, account_id=EGP_ACCOUNT) as tenants_server,
    ):
        objects = client.CustomObjectsApi(api)
        core = client.CoreV1Api(api)
        # team-b's Secret also exists under a name team-a does not have, granted in team-b only.
        core.create_namespaced_secret(
            TEAM_B,
            client.V1Secret(
                metadata=client.V1ObjectMeta(name="b-only"), string_data={"apiKey": KEY_B}
            ),
        )
        tenants_server.add_key(KEY_B, EGP_ACCOUNT)  # it would be accepted, were it ever sent
        tenants_server.add_models(generate_models(3, seed=41))

        # Admission: every spelling of a path, and every baseURL that picks its own query,
        # fragment or credentials, is refused by the CRD before the operator sees it.
        crafted = [
            _source(TEAM_A, f"traversal-{n}", tenants_server.url, secret=name)
            for n, name in enumerate(TRAVERSALS)
        ] + [
            _source(TEAM_A, f"url-{n}", base_url)
            for n, base_url in enumerate(
                [
                    f"{tenants_server.url}/v1/secrets?x=",
                    f"{tenants_server.url}/#fragment",
                    "http://user:password@127.0.0.1:1/",
                    "file:///var/run/secrets/kubernetes.io/serviceaccount/token",
                ]
            )
        ]
        for body in crafted:
            with pytest.raises(client.ApiException) as raised:
                objects.create_namespaced_custom_object(GROUP, VERSION, TEAM_A, SOURCE_PLURAL, body)
            assert raised.value.status == 422, body["spec"]

        # What passes admission: team-a's own source, a source naming a Secret that exists in
        # team-b only, and one pointed at the cloud metadata address.
        for body in (
            _source(TEAM_A, "own", tenants_server.url),
            _source(TEAM_A, "borrowed", tenants_server.url, secret="b-only"),
            _source(TEAM_A, "metadata", "http://169.254.169.254/latest"),
        ):
            objects.create_namespaced_custom_object(GROUP, VERSION, TEAM_A, SOURCE_PLURAL, body)

        operator = OperatorProcess(
            installed.kubeconfig, tmp_path / "operator.log", status_heartbeat_seconds="3600"
        )
        try:

            def synced_reason(name: str) -> str | None:
                status = objects.get_namespaced_custom_object(
                    GROUP, VERSION, TEAM_A, SOURCE_PLURAL, name
                ).get("status", {})
                synced = [c for c in status.get("conditions", []) if c["type"] == "Synced"]
                return synced[0]["reason"] if synced else None

            reasons = eventually(
                lambda: (
                    found
                    if None
                    not in (
                        found := {n: synced_reason(n) for n in ("own", "borrowed", "metadata")}
                    ).values()
                    else None
                ),
                timeout=90,
                what="a cycle of each of team-a's sources",
            )
            assert reasons == {
                "own": "Synced",
                "borrowed": "SecretUnreadable",
                "metadata": "EndpointRefused",
            }
        finally:
            operator.stop()
        assert tenants_server.api_keys_seen() == {KEY_A}
        assert KEY_B not in operator.log()
        assert not objects.list_namespaced_custom_object(GROUP, VERSION, TEAM_B, MODEL_PLURAL)[
            "items"
        ], "a source of team-a wrote into team-b"


# ---- the image, built from the Dockerfile, run as the Deployment runs it ---------------------


@pytest.fixture(scope="module")
def image() -> str:
    return image_name()


#: Every distribution in the image's Python, by name.
LIST_DISTRIBUTIONS = (
    "import importlib.metadata as m, json;"
    " print(json.dumps([d.metadata['Name'].lower() for d in m.distributions()]))"
)


def test_the_image_holds_the_runtime_dependencies_and_no_test_bench(image: str) -> None:
    listed = run_in_image(image, "-c", LIST_DISTRIBUTIONS, entrypoint="python")
    assert listed.returncode == 0, listed.stderr
    installed = set(json.loads(listed.stdout))
    assert {"egp-operator", "kopf", "aiohttp", "pydantic"} <= installed
    assert not installed & {
        "egp-operator-testbench",
        "fastapi",
        "uvicorn",
        "pytest",
        "mypy",
        "ruff",
        "pip",  # only the build uses these two
        "setuptools",
    }
    config = json.loads(podman("image", "inspect", image).stdout)[0]["Config"]
    assert config["User"] == f"{IMAGE_USER}:{IMAGE_USER}"  # numeric: runAsNonRoot can check it
    assert config["Entrypoint"] == ["egp-operator", "run"]


def _healthz(port: int) -> int | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code
    except httpx.TransportError:
        return None


def test_the_image_runs_as_the_deployment_says_and_mirrors(
    kube_bin_dir: Path, installed: Installed, image: str, tmp_path: Path
) -> None:
    """The image under runc with deploy/'s pod template: its user, a read-only root, no
    capabilities, the runtime's seccomp profile, its limits and its /tmp emptyDir; logged in
    through the in-cluster configuration with the ServiceAccount's projected files. Its probe
    answers, it mirrors, its log is JSON a line, Prometheus's token reads /metrics, and SIGTERM
    ends it within the grace period."""
    namespace = "image-pod"
    _tenant(kube_bin_dir, installed, namespace, EGP_KEY)
    deployment = next(doc for doc in installed.base if doc["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == SERVICE_ACCOUNT
    files = ServiceAccountFiles.write(
        tmp_path / "serviceaccount",
        token=service_account_token(installed.cluster, BASE_NAMESPACE, SERVICE_ACCOUNT),
        ca=installed.cluster.ca_file.read_bytes(),
        namespace=BASE_NAMESPACE,
        server=installed.cluster.server,
    )
    metrics_port, liveness_port = free_ports(2)
    pod = PodContainer(
        image,
        deployment,
        pod_name="egp-operator-5d8c7b9f4-x2vq7",
        service_account=files,
        # The host's network is shared: loopback only, and ports of their own.
        env={
            "EGP_OPERATOR_PROBE_HOST": "127.0.0.1",
            "EGP_OPERATOR_METRICS_PORT": str(metrics_port),
            "EGP_OPERATOR_LIVENESS_PORT": str(liveness_port),
            "EGP_OPERATOR_STATUS_HEARTBEAT_SECONDS": "3600",
        },
    )
    upstream = generate_models(4, seed=61)
    with (
        installed.cluster.api_client() as api,
        FakeEGPServer(api_key=EGP_KEY, account_id=EGP_ACCOUNT) as egp,
    ):
        egp.add_models(upstream)
        apply(kube_bin_dir, installed.cluster.kubeconfig, [_source(namespace, SOURCE, egp.url)])
        pod.start()
        try:
            eventually(lambda: _healthz(liveness_port) == 200, timeout=120, what="/healthz")
            objects = client.CustomObjectsApi(api)
            eventually(
                lambda: (
                    len(
                        objects.list_namespaced_custom_object(
                            GROUP, VERSION, namespace, MODEL_PLURAL
                        )["items"]
                    )
                    == len(upstream)
                ),
                timeout=120,
                what="the pod to mirror",
            )
            status = pod.exec("cat", "/proc/1/status")
            assert uids_of(status) == {str(IMAGE_USER)}
            written = pod.exec_result("python", "-c", "open('/opt/egp-operator/x', 'w')")
            assert "Read-only file system" in written.stderr
            scraped = httpx.get(
                f"http://127.0.0.1:{metrics_port}/metrics",
                headers={"Authorization": f"Bearer {installed.metrics_token}"},
                timeout=5,
            )
            assert scraped.status_code == 200
            assert "egp_operator_models" in scraped.text
            started = time.monotonic()
            stopped = pod.stop()
            took = time.monotonic() - started
            assert stopped.returncode == 0, stopped.stderr
            state = pod.inspect()["State"]
        finally:
            log = pod.logs()
            pod.remove()
            print(log[-5000:])
    assert state["ExitCode"] == 0, state  # 137: killed at the end of the grace period
    assert took < pod.grace_seconds
    lines = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert all({"message", "severity", "timestamp"} <= line.keys() for line in lines)
    assert any(line.get("object", {}).get("namespace") == namespace for line in lines)
    assert not [line for line in lines if "Traceback" in line.get("exc_info", line["message"])]
    assert "Read-only file system" not in log  # it writes nothing outside /tmp
    assert EGP_KEY not in log
