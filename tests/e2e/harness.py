"""The operator as in production, for e2e tests: `egp-operator run` in its own process against
the real API server, plus helpers to read what it mirrored."""

from __future__ import annotations

import base64
import contextlib
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from egp_operator.resources.models import (
    GROUP,
    MODEL_PLURAL,
    SOURCE_PLURAL,
    SYNC_REQUEST_ANNOTATION,
    VERSION,
)
from egp_testbench.cluster import LocalControlPlane
from egp_testbench.fake_egp import FakeEGPServer
from egp_testbench.operator_process import OPERATOR_COMMAND
from egp_testbench.operator_process import OperatorProcess as OperatorProcess
from egp_testbench.processes import free_port, stop_group
from tests.e2e.polling import eventually

EGP_KEY = "sk-e2e-7c1f0b5a9d3e"
EGP_ACCOUNT = "acct-e2e"


class Mirror:
    """Reads and writes the egp-operator.io resources of one namespace."""

    def __init__(self, api: Any, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.namespace = namespace

    def models(self) -> list[dict[str, Any]]:
        answer = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, MODEL_PLURAL
        )
        items: list[dict[str, Any]] = answer["items"]
        return items

    def by_model_id(self) -> dict[str, dict[str, Any]]:
        return {item["spec"]["modelID"]: item for item in self.models()}

    def source(self, name: str) -> dict[str, Any]:
        source: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, SOURCE_PLURAL, name
        )
        return source

    def source_condition(self, name: str, type_: str) -> dict[str, Any]:
        conditions = self.source(name).get("status", {}).get("conditions", [])
        return next((c for c in conditions if c["type"] == type_), {})

    def create_source(self, name: str, base_url: str, **spec: Any) -> dict[str, Any]:
        body = source_body(self.namespace, name, base_url, **spec)
        created: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, SOURCE_PLURAL, body
        )
        return created

    def patch_source_spec(self, name: str, **spec: Any) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, SOURCE_PLURAL, name, {"spec": spec}
        )

    def request_sync(self, name: str, value: str) -> None:
        """Ask for a sync now, as `kubectl annotate --overwrite` would."""
        self.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            self.namespace,
            SOURCE_PLURAL,
            name,
            {"metadata": {"annotations": {SYNC_REQUEST_ANNOTATION: value}}},
        )

    def create_secret(self, name: str, api_key: str) -> None:
        self.core.create_namespaced_secret(
            self.namespace,
            client.V1Secret(
                metadata=client.V1ObjectMeta(name=name), string_data={"apiKey": api_key}
            ),
        )

    def events_for(self, object_name: str) -> list[Any]:
        events = self.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={object_name}"
        )
        return list(events.items)

    def resource_versions(self) -> dict[str, str]:
        return {m["metadata"]["name"]: m["metadata"]["resourceVersion"] for m in self.models()}


@contextmanager
def running_operator(
    kubeconfig: Path,
    log_file: Path,
    *,
    command: Sequence[str] = OPERATOR_COMMAND,
    **settings: str,
) -> Iterator[OperatorProcess]:
    """One replica of the operator as in production, once kopf has started; stopped after,
    its log's tail printed for the test report."""
    replica = OperatorProcess(kubeconfig, log_file, command=command, **settings)
    try:
        eventually(
            lambda: "Resuming operations" in replica.log() or "cycle of" in replica.log(),
            timeout=60,
            what="the operator to start",
        )
        yield replica
    finally:
        replica.stop()
        print(replica.log()[-5000:])


INTERVAL = 10  # seconds: the smallest refreshInterval a source may ask for
ONE_CYCLE = INTERVAL * 2 + 10  # an interval with its jitter, plus the cycle itself


def start_source(mirror: Mirror, egp: FakeEGPServer, name: str = "src", **spec: Any) -> None:
    mirror.create_secret(f"{name}-credentials", EGP_KEY)
    mirror.create_source(name, egp.url, accountID=EGP_ACCOUNT, **spec)


def sync_now(mirror: Mirror, name: str = "src", timeout: float = ONE_CYCLE) -> dict[str, Any]:
    """Ask for a sync now, as `kubectl annotate` would, and wait until a cycle has handled it
    (the status echoes the request): what that cycle did is visible on return. Tests use it
    instead of waiting out the interval; returns the source."""
    request = f"e2e-{uuid.uuid4().hex[:12]}"
    mirror.request_sync(name, request)

    def handled() -> dict[str, Any] | None:
        source = mirror.source(name)
        return source if source.get("status", {}).get("lastHandledSyncRequest") == request else None

    return eventually(handled, timeout=timeout, what=f"a cycle of {name} to handle {request}")


def wait_mirrored(mirror: Mirror, count: int) -> dict[str, dict[str, Any]]:
    def complete() -> dict[str, dict[str, Any]] | None:
        models = mirror.by_model_id()
        done = len(models) == count and all(
            m.get("status", {}).get("phase") for m in models.values()
        )
        return models if done else None

    return eventually(complete, timeout=120, interval=0.5, what=f"{count} mirrored models")


def phase(mirror: Mirror, model_id: str) -> str | None:
    model = mirror.by_model_id().get(model_id)
    return model.get("status", {}).get("phase") if model else None


def ready_condition(model: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in model["status"]["conditions"] if c["type"] == "Ready")


def list_walks(egp: FakeEGPServer) -> int:
    """Complete walks the server has answered: first pages without a cursor."""
    return sum(
        1
        for r in egp.recent_requests()
        if r["endpoint"] == "list" and r["status"] == 200 and "starting_after" not in r["query"]
    )


def metrics_text(operator: OperatorProcess, token: str | None = None) -> str:
    """The operator's /metrics, read with `token`, or else the token the operator itself logs in
    with (the admin's, for an operator run with the cluster's kubeconfig)."""
    headers = {"Authorization": f"Bearer {token}"} if token else operator.metrics_headers
    answer = httpx.get(operator.metrics_url, headers=headers, timeout=5)
    answer.raise_for_status()
    return answer.text


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus' text format as {(sample name, labels): value}."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name, frozenset(sample.labels.items())] = sample.value
    return found


def scrape(
    operator: OperatorProcess, token: str | None = None
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The operator's /metrics as {(sample name, labels): value}."""
    return samples(metrics_text(operator, token))


def service_account_token(cluster: LocalControlPlane, namespace: str, name: str) -> str:
    """A token of the ServiceAccount `namespace/name`, minted by the TokenRequest API as the
    kubelet does for a pod (for the API server's own audiences, an hour long)."""
    with cluster.api_client() as api:
        answer = client.CoreV1Api(api).create_namespaced_service_account_token(
            name,
            namespace,
            client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)
            ),
        )
    return str(answer.status.token)


METRICS_READER = "egp-operator-metrics-reader"
DEPLOY_RBAC = Path(__file__).parents[2] / "deploy" / "rbac.yaml"


def metrics_reader_token(cluster: LocalControlPlane, namespace: str, name: str) -> str:
    """A token of a new ServiceAccount `namespace/name` bound to the shipped ClusterRole
    egp-operator-metrics-reader (deploy/rbac.yaml, applied if it is not there yet), as a
    platform admin binds their Prometheus."""
    role = next(
        doc
        for doc in yaml.safe_load_all(DEPLOY_RBAC.read_text())
        if doc and doc["kind"] == "ClusterRole" and doc["metadata"]["name"] == METRICS_READER
    )
    with cluster.api_client() as api:
        core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
        rbac.patch_cluster_role(
            METRICS_READER,
            role,
            field_manager="egp-e2e",
            force=True,
            _content_type="application/apply-patch+yaml",
        )
        with contextlib.suppress(client.ApiException):  # 409: the namespace is there
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        core.create_namespaced_service_account(
            namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
        )
        rbac.create_cluster_role_binding(
            client.V1ClusterRoleBinding(
                metadata=client.V1ObjectMeta(name=f"{namespace}-{name}-metrics-reader"),
                role_ref=client.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=METRICS_READER
                ),
                subjects=[
                    client.RbacV1Subject(kind="ServiceAccount", name=name, namespace=namespace)
                ],
            )
        )
    return service_account_token(cluster, namespace, name)


def service_account_kubeconfig(
    cluster: LocalControlPlane, namespace: str, name: str, path: Path
) -> Path:
    """A kubeconfig with a token of the ServiceAccount `namespace/name` (`service_account_token`):
    the operator run with it has the installed RBAC and nothing else. The CA is inline, so the
    file stands alone, as a pod's projected token and CA do."""
    token = service_account_token(cluster, namespace, name)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {
                    "server": cluster.server,
                    "certificate-authority-data": base64.b64encode(
                        cluster.ca_file.read_bytes()
                    ).decode(),
                },
            }
        ],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": "local", "user": name}}],
        "current-context": name,
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


CRDS_DIR = Path(__file__).parents[2] / "crds"


def install_crds(plane: LocalControlPlane) -> list[str]:
    """Every CRD under `crds/` (what users install: the generated EGPSource and EGPModel, and
    kopf's peering), server-side applied; returns their names once all are Established. The
    files, not the generator: a unit test keeps the two equal."""
    crds = [
        document
        for path in sorted(CRDS_DIR.glob("*.yaml"))
        for document in yaml.safe_load_all(path.read_text())
        if document and document.get("kind") == "CustomResourceDefinition"
    ]
    names = [crd["metadata"]["name"] for crd in crds]
    with plane.api_client() as api:
        ext = client.ApiextensionsV1Api(api)
        for crd in crds:
            ext.patch_custom_resource_definition(
                crd["metadata"]["name"],
                crd,
                field_manager="egp-e2e",
                force=True,
                _content_type="application/apply-patch+yaml",
            )

        def established(name: str) -> bool:
            conditions = ext.read_custom_resource_definition(name).status.conditions or []
            return any(c.type == "Established" and c.status == "True" for c in conditions)

        eventually(
            lambda: all(established(name) for name in names),
            what=f"CRDs {', '.join(names)} to be established",
        )
    return names


def create_peering(plane: LocalControlPlane) -> str:
    """The ClusterKopfPeering the operator's replicas meet in."""
    with plane.api_client() as api_client:
        client.CustomObjectsApi(api_client).create_cluster_custom_object(
            "kopf.dev",
            "v1",
            "clusterkopfpeerings",
            {
                "apiVersion": "kopf.dev/v1",
                "kind": "ClusterKopfPeering",
                "metadata": {"name": "egp-operator"},
            },
        )
    return "egp-operator"


@contextmanager
def running_prometheus(bin_dir: Path, config: dict[str, Any], directory: Path) -> Iterator[str]:
    """Debian's Prometheus with `config` (files it names are relative to `directory`), on a
    loopback port, until it is ready; yields its base URL, and stops it after."""
    (directory / "prometheus.yaml").write_text(yaml.safe_dump(config))
    port = free_port()
    log_path = directory / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(bin_dir / "prometheus"),
                f"--config.file={directory / 'prometheus.yaml'}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            cwd=directory,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            assert process.poll() is None, log_path.read_text()[-3000:]
            try:
                return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        eventually(ready, timeout=30, what="Prometheus to be ready")
        yield url
    finally:
        stop_group(process.pid, timeout=15, running=lambda: process.poll() is None)


def prometheus_query(url: str, expression: str) -> list[dict[str, Any]]:
    """The instant vector `expression` evaluates to now (empty while Prometheus cannot say)."""
    try:
        answer = httpx.get(f"{url}/api/v1/query", params={"query": expression}, timeout=5)
    except httpx.TransportError:
        return []
    return list(answer.json()["data"]["result"]) if answer.status_code == 200 else []


def source_body(
    namespace: str, name: str, base_url: str, *, secret: str | None = None, **spec: Any
) -> dict[str, Any]:
    """An EGPSource as the tests write it: its Secret `<name>-credentials` unless named, a
    10 s interval, and whatever else `spec` says."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "EGPSource",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "baseURL": base_url,
            "credentialsSecretRef": {"name": secret or f"{name}-credentials"},
            "refreshInterval": "10s",
            **spec,
        },
    }


TOOLS_DIR = Path(__file__).parents[2] / "tools"


def checked_tool(script: str) -> str | None:
    """What `tools/<script> --check` prints last (where it put what it builds or installs),
    or None when that is not there yet."""
    checked = subprocess.run(
        ["bash", str(TOOLS_DIR / script), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = checked.stdout.strip().splitlines()
    return lines[-1] if checked.returncode == 0 and lines else None
