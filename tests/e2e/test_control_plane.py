"""The local control plane behaves like a real cluster in what the operator relies on:
RBAC, ServiceAccount tokens, garbage collection, namespace lifecycle and CRD validation,
and it leaves nothing running once stopped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from egp_testbench.cluster import LocalControlPlane, port_is_free

from .polling import eventually

REPO_ROOT = Path(__file__).resolve().parents[2]


def _status_of(call: Any) -> int:
    """The HTTP status a client call fails with (or 200 if it succeeds)."""
    try:
        call()
    except ApiException as err:
        return int(err.status)
    return 200


def _gone(read: Any) -> bool:
    """True once ``read()`` answers 404."""
    return _status_of(read) == 404


def _pinned_version() -> str:
    """go.mod's version, or the one EGP_KUBE_VERSION asked tools/kube/build.sh for (the
    version matrix, docs/compatibility.md)."""
    if os.environ.get("EGP_KUBE_VERSION"):
        return os.environ["EGP_KUBE_VERSION"]
    for line in (REPO_ROOT / "tools" / "kube" / "go.mod").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "k8s.io/kubernetes" and fields[1].startswith("v"):
            return fields[1]
    raise AssertionError("k8s.io/kubernetes is not pinned in tools/kube/go.mod")


def _client_with_token(plane: LocalControlPlane, token: str) -> Any:
    cfg = client.Configuration()
    cfg.host = plane.server
    cfg.ssl_ca_cert = str(plane.ca_file)
    cfg.api_key = {"authorization": token}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    return client.ApiClient(cfg)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return state[state.rindex(")") + 2] != "Z"


def _pids_mentioning(text: str) -> list[int]:
    """Live processes whose command line mentions ``text`` (e.g. a cluster's folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline and _alive(int(entry.name)):
            found.append(int(entry.name))
    return found


# ---- the API server ------------------------------------------------------------------------


def test_server_reports_the_pinned_kubernetes_version(api: Any) -> None:
    assert client.VersionApi(api).get_code().git_version == _pinned_version()


def test_builtin_namespaces_are_listed(api: Any) -> None:
    names = {ns.metadata.name for ns in client.CoreV1Api(api).list_namespace().items}
    assert {"default", "kube-system", "kube-public"} <= names


def test_kubeconfig_file_logs_in_as_admin(control_plane: LocalControlPlane) -> None:
    with config.new_client_from_config(config_file=str(control_plane.kubeconfig)) as api:
        review = client.AuthenticationV1Api(api).create_self_subject_review(
            client.V1SelfSubjectReview()
        )
    assert review.status.user_info.username == "admin"
    assert "system:masters" in review.status.user_info.groups


# ---- the controller manager ----------------------------------------------------------------


def test_new_namespace_gets_default_service_account_and_root_ca(api: Any, namespace: str) -> None:
    core = client.CoreV1Api(api)

    def read_or_none(read: Any) -> Any:
        try:
            return read()
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    eventually(
        lambda: read_or_none(lambda: core.read_namespaced_service_account("default", namespace)),
        what="the default ServiceAccount",
    )
    ca = eventually(
        lambda: read_or_none(
            lambda: core.read_namespaced_config_map("kube-root-ca.crt", namespace)
        ),
        what="the kube-root-ca.crt ConfigMap",
    )
    assert "BEGIN CERTIFICATE" in ca.data["ca.crt"]


def test_deleting_an_owner_garbage_collects_its_dependents(api: Any, namespace: str) -> None:
    core = client.CoreV1Api(api)
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    reference = client.V1OwnerReference(
        api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
    )
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="dependent", owner_references=[reference])
        ),
    )

    core.delete_namespaced_config_map("owner", namespace, propagation_policy="Background")

    eventually(
        lambda: _gone(lambda: core.read_namespaced_config_map("dependent", namespace)),
        what="the garbage collector to delete the dependent",
    )


def test_deleting_a_namespace_removes_it_with_its_contents(api: Any) -> None:
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="e2e-doomed")))
    core.create_namespaced_config_map(
        "e2e-doomed", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="content"))
    )

    core.delete_namespace("e2e-doomed")

    eventually(
        lambda: _gone(lambda: core.read_namespace("e2e-doomed")),
        what="the namespace controller to finish deleting the namespace",
    )


# ---- authentication and RBAC ---------------------------------------------------------------


@pytest.fixture
def service_account_token(api: Any, namespace: str) -> str:
    """A bound token of a fresh ServiceAccount `robot` that has no roles."""
    core = client.CoreV1Api(api)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="robot"))
    )
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
    )
    token: str = core.create_namespaced_service_account_token(
        "robot", namespace, request
    ).status.token
    return token


def test_service_account_without_roles_is_forbidden_while_admin_is_allowed(
    control_plane: LocalControlPlane, api: Any, namespace: str, service_account_token: str
) -> None:
    with _client_with_token(control_plane, service_account_token) as robot:
        review = client.AuthenticationV1Api(robot).create_self_subject_review(
            client.V1SelfSubjectReview()
        )
        assert review.status.user_info.username == f"system:serviceaccount:{namespace}:robot"
        assert (
            _status_of(lambda: client.CoreV1Api(robot).list_namespaced_config_map(namespace)) == 403
        )

    assert _status_of(lambda: client.CoreV1Api(api).list_namespaced_config_map(namespace)) == 200

    def can_list(user: str, groups: list[str]) -> bool:
        review = client.AuthorizationV1Api(api).create_subject_access_review(
            client.V1SubjectAccessReview(
                spec=client.V1SubjectAccessReviewSpec(
                    user=user,
                    groups=groups,
                    resource_attributes=client.V1ResourceAttributes(
                        namespace=namespace, verb="list", resource="configmaps"
                    ),
                )
            )
        )
        return bool(review.status.allowed)

    robot_groups = ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"]
    assert not can_list(f"system:serviceaccount:{namespace}:robot", robot_groups)
    assert can_list("admin", ["system:masters"])


def test_role_binding_grants_a_service_account_access(
    control_plane: LocalControlPlane, api: Any, namespace: str, service_account_token: str
) -> None:
    rbac = client.RbacAuthorizationV1Api(api)
    rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="read-configmaps"),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=["list"])],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="robot-reads-configmaps"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name="read-configmaps"
            ),
            subjects=[
                client.RbacV1Subject(kind="ServiceAccount", name="robot", namespace=namespace)
            ],
        ),
    )

    with _client_with_token(control_plane, service_account_token) as robot:
        core = client.CoreV1Api(robot)
        # The authorizer sees new bindings through an informer: allow it a moment.
        eventually(
            lambda: _status_of(lambda: core.list_namespaced_config_map(namespace)) == 200,
            what="the RoleBinding to take effect",
        )
        assert _status_of(lambda: core.list_namespaced_secret(namespace)) == 403


# ---- custom resources ----------------------------------------------------------------------

GROUP, VERSION, PLURAL = "e2e.egp.test", "v1", "widgets"


@pytest.fixture(scope="module")
def widget_crd(control_plane: LocalControlPlane) -> Iterator[str]:
    """A namespaced `Widget` CRD whose schema requires `spec.model` and `spec.replicas >= 1`."""
    name = f"{PLURAL}.{GROUP}"
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["model"],
                "properties": {
                    "model": {"type": "string", "minLength": 1},
                    "replicas": {"type": "integer", "minimum": 1},
                },
            }
        },
    }
    crd = client.V1CustomResourceDefinition(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1CustomResourceDefinitionSpec(
            group=GROUP,
            scope="Namespaced",
            names=client.V1CustomResourceDefinitionNames(
                plural=PLURAL, singular="widget", kind="Widget"
            ),
            versions=[
                client.V1CustomResourceDefinitionVersion(
                    name=VERSION,
                    served=True,
                    storage=True,
                    schema=client.V1CustomResourceValidation(open_apiv3_schema=schema),
                )
            ],
        ),
    )
    with control_plane.api_client() as api:
        ext = client.ApiextensionsV1Api(api)
        ext.create_custom_resource_definition(crd)

        def established() -> bool:
            conditions = ext.read_custom_resource_definition(name).status.conditions or []
            return any(c.type == "Established" and c.status == "True" for c in conditions)

        eventually(established, what=f"CRD {name} to be established")
        yield name
        ext.delete_custom_resource_definition(name)


def _widget(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": spec,
    }


def test_custom_resource_is_stored_and_read_back(api: Any, namespace: str, widget_crd: str) -> None:
    custom = client.CustomObjectsApi(api)
    created = custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, _widget("w1", {"model": "gpt-x", "replicas": 2})
    )

    read = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "w1")

    assert read["spec"] == {"model": "gpt-x", "replicas": 2}
    assert read["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert read["metadata"]["uid"]


@pytest.mark.parametrize(
    "spec",
    [{"replicas": 1}, {"model": "gpt-x", "replicas": 0}, {"model": 7}],
    ids=["missing-required-field", "below-minimum", "wrong-type"],
)
def test_custom_resource_violating_the_schema_is_rejected(
    api: Any, namespace: str, widget_crd: str, spec: dict[str, Any]
) -> None:
    custom = client.CustomObjectsApi(api)

    with pytest.raises(ApiException) as caught:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, _widget("bad", spec)
        )

    assert caught.value.status == 422
    assert json.loads(caught.value.body)["reason"] == "Invalid"


# ---- stopping ------------------------------------------------------------------------------


def test_stop_ends_every_process_and_frees_every_port(kube_bin_dir: Path, tmp_path: Path) -> None:
    plane = LocalControlPlane(kube_bin_dir, tmp_path / "cluster")
    plane.start()
    try:
        pids, ports = plane.pids, plane.ports
        assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager"}
        assert all(_alive(pid) for pid in pids.values())
        assert plane.is_ready()
    finally:
        plane.stop()

    assert not [name for name, pid in pids.items() if _alive(pid)]
    assert not _pids_mentioning(str(tmp_path / "cluster"))
    assert [name for name, port in ports.items() if not port_is_free(port)] == []
    assert json.loads((tmp_path / "cluster" / "state.json").read_text())["stopped"] is True
    plane.stop()  # a second stop is harmless


def test_cli_down_from_another_process_stops_a_cluster_started_by_up(
    kube_bin_dir: Path, tmp_path: Path
) -> None:
    cluster_dir = tmp_path / "cli-cluster"
    env = {**os.environ, "EGP_KUBE_BIN_DIR": str(kube_bin_dir)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "egp_testbench.cluster",
                *args,
                "--dir",
                str(cluster_dir),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    up = cli("up")
    try:
        assert up.returncode == 0, up.stderr
        kubeconfig = up.stdout.strip().splitlines()[-1]
        assert kubeconfig == str(cluster_dir / "kubeconfig")
        # `up` has exited, yet the cluster it started keeps serving.
        with config.new_client_from_config(config_file=kubeconfig) as api:
            names = {ns.metadata.name for ns in client.CoreV1Api(api).list_namespace().items}
        assert "kube-system" in names
        assert cli("status").stdout.strip() == "up"
        assert cli("up").stdout.strip() == kubeconfig  # already up: same cluster
    finally:
        down = cli("down")

    assert down.returncode == 0, down.stderr
    state = json.loads((cluster_dir / "state.json").read_text())
    assert not [p["name"] for p in state["processes"] if _alive(p["pid"])]
    assert not _pids_mentioning(str(cluster_dir))
    assert all(port_is_free(port) for port in state["ports"].values())
    assert (cluster_dir / "logs" / "kube-apiserver.log").stat().st_size > 0  # logs are kept
    assert cli("down").returncode == 0  # idempotent
    assert cli("status").returncode == 1
