"""The operator's image as a Pod on a real kubelet (testbench/egp_testbench/node.py), as platform
teams run it: installed with the chart, it becomes Ready through its own probes, mirrors an
account from the local EGP server, runs as the image's user on a read-only root and logs JSON;
Prometheus scrapes it behind the Service the chart's ServiceMonitor selects; an upgrade that
changes a setting rolls it, the old pod ending on SIGTERM well within its grace period; of two
replicas one works, and deleting it hands over; and deploy/ runs it too.

The node's whole world lives in a network namespace of its own (tools/node/netns.sh); `make
test` runs the suite there. The tests of this module run in file order, on one release.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, watch

from egp_operator.resources.models import GROUP, MODEL_PLURAL
from egp_testbench.cluster import DEFAULT_CONTROLLERS, LocalControlPlane
from egp_testbench.fake_egp import FakeEGPServer, generate_models
from egp_testbench.node import NODE_ADDRESS, NODE_CONTROLLERS, LocalNode, in_node_namespace
from release.chart import CHART
from tests.e2e.conftest import go_tool
from tests.e2e.container import IMAGE_USER, image_name, uids_of
from tests.e2e.harness import (
    EGP_ACCOUNT,
    EGP_KEY,
    checked_tool,
    prometheus_query,
    running_prometheus,
    service_account_token,
    source_body,
)
from tests.e2e.polling import eventually
from tests.manifests import kustomize

REPO = Path(__file__).parents[2]
RELEASE = "egp"
NAMESPACE = "egp-operator-system"
TENANT = "ml"
SECRET = "egp-credentials"
SOURCE = "egp"
REFRESH_SECONDS = 10
MONITORING, PROMETHEUS = "monitoring", "prometheus"
OPERATOR_PODS = "app.kubernetes.io/component=operator"
UPSTREAM = generate_models(5, seed=83)
#: The longest a source goes unsynced when the working replica is deleted (docs/install.md):
#: the standby resumes once the leaver's peering entry is gone, and syncs within an interval.
HANDOVER_SECONDS = REFRESH_SECONDS + 20
#: How long a pod takes to stop on SIGTERM (deploy/deployment.yaml: "A sync daemon gets 30 s to
#: finish its cycle"), well inside the grace period.
STOP_SECONDS = 30


def _node_bin_dir() -> Path:
    found = checked_tool("node/setup.sh")
    if found is None:
        pytest.fail("the node's packages or binaries are missing: `make node-bins`")
    return Path(found)


@dataclass
class Node:
    """The control plane with its node, the local EGP server on the node's address, and the
    tools platform teams use on it."""

    cluster: LocalControlPlane
    kubectl: Path
    helm: Path
    image: str
    egp: FakeEGPServer
    work: Path

    def run(
        self, tool: Path, *args: str, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(tool), "--kubeconfig", str(self.cluster.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )

    def kubectl_ok(self, *args: str, stdin: str | None = None) -> str:
        done = self.run(self.kubectl, *args, stdin=stdin)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def helm_release(self, verb: str, values: dict[str, Any]) -> None:
        """`helm install` or `helm upgrade`, waiting (as `--wait` does) for the Deployment's
        pods to be Ready through their probes."""
        path = self.work / f"values-{verb}-{time.monotonic_ns()}.yaml"
        path.write_text(yaml.safe_dump(values))
        extra = ["--create-namespace"] if verb == "install" else []
        done = self.run(
            self.helm, verb, RELEASE, str(CHART), "-n", NAMESPACE, "-f", str(path),
            "--wait", "--timeout=3m", *extra,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr + self.describe()

    def describe(self) -> str:
        return self.run(self.kubectl, "describe", "pods", "-n", NAMESPACE).stdout[-4000:]

    def pods(self) -> list[dict[str, Any]]:
        """The operator's pods that are not being deleted."""
        found = json.loads(
            self.kubectl_ok("get", "pods", "-n", NAMESPACE, "-l", OPERATOR_PODS, "-o", "json")
        )["items"]
        return [pod for pod in found if "deletionTimestamp" not in pod["metadata"]]

    def logs(self, pod: str, *, missing_ok: bool = False) -> list[dict[str, Any]]:
        """`kubectl logs` of the pod, a JSON object a line; with `missing_ok`, none for a pod
        whose container has not started yet."""
        done = self.run(self.kubectl, "logs", "-n", NAMESPACE, pod)
        if done.returncode != 0 and missing_ok:
            return []
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]

    def models(self) -> int:
        found = json.loads(
            self.kubectl_ok("get", f"{MODEL_PLURAL}.{GROUP}", "-n", TENANT, "-o", "json")
        )
        return len(found["items"])


def _ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _cycles(lines: list[dict[str, Any]]) -> list[datetime]:
    """When each cycle of the tenant's source ended Synced, by the log's own timestamps."""
    return [
        datetime.fromisoformat(line["timestamp"])
        for line in lines
        if line["message"].startswith(f"cycle of EGPSource {TENANT}/{SOURCE}: Synced")
    ]


@pytest.fixture(scope="module")
def node(kube_bin_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    if not in_node_namespace():
        pytest.fail(
            f"{NODE_ADDRESS} is on no interface: the Pod tests run inside the node's network"
            " namespace (`make test` does it; or tools/node/netns.sh .venv/bin/pytest ...)"
        )
    bin_dir, image = _node_bin_dir(), image_name()
    # Under netns.sh's folder, whose mounts it removes at the end whatever happens.
    root = os.environ.get("EGP_NODE_DIR")
    work = Path(root) / "pod-tests" if root else tmp_path_factory.mktemp("pod-tests")
    cluster = LocalControlPlane(
        kube_bin_dir,
        work / "cluster",
        controllers=DEFAULT_CONTROLLERS + NODE_CONTROLLERS,
        node_address=NODE_ADDRESS,
    )
    cluster.start()
    local_node = LocalNode(cluster, bin_dir, work / "node", images=[image])
    try:
        local_node.start()
        with FakeEGPServer(api_key=EGP_KEY, account_id=EGP_ACCOUNT, host=NODE_ADDRESS) as egp:
            egp.add_models(UPSTREAM)
            world = Node(cluster, kube_bin_dir / "kubectl", go_tool("helm3"), image, egp, work)
            world.kubectl_ok("create", "namespace", TENANT)
            world.kubectl_ok("create", "namespace", MONITORING)
            world.kubectl_ok("create", "serviceaccount", PROMETHEUS, "-n", MONITORING)
            key = f"--from-literal=apiKey={EGP_KEY}"
            world.kubectl_ok("create", "secret", "generic", SECRET, "-n", TENANT, key)
            yield world
    finally:
        local_node.stop()


def _values(image: str, **more: Any) -> dict[str, Any]:
    repository, tag = image.rsplit(":", 1)
    return {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "tenants": [{"namespace": TENANT, "secrets": [SECRET]}],
        "metrics": {"readers": [{"name": PROMETHEUS, "namespace": MONITORING}]},
        **more,
    }


def test_the_chart_runs_the_image_as_a_ready_pod_that_mirrors(node: Node) -> None:
    node.helm_release("install", _values(node.image))
    source = source_body(
        TENANT, SOURCE, node.egp.url,
        secret=SECRET, accountID=EGP_ACCOUNT, refreshInterval=f"{REFRESH_SECONDS}s",
    )  # fmt: skip
    node.kubectl_ok("apply", "--server-side", "-f", "-", stdin=json.dumps(source))
    eventually(lambda: node.models() == len(UPSTREAM), timeout=120, what="the pod to mirror")

    [pod] = node.pods()
    name = pod["metadata"]["name"]
    assert _ready(pod)
    [container] = pod["status"]["containerStatuses"]
    assert container["restartCount"] == 0
    status = node.kubectl_ok("exec", "-n", NAMESPACE, name, "--", "cat", "/proc/1/status")
    assert uids_of(status) == {str(IMAGE_USER)}
    written = node.run(
        node.kubectl, "exec", "-n", NAMESPACE, name, "--", "python", "-c", "open('/x', 'w')"
    )
    assert written.returncode != 0
    assert "Read-only file system" in written.stderr

    def logged_a_cycle() -> list[dict[str, Any]] | None:
        lines = node.logs(name)
        return lines if _cycles(lines) else None

    lines = eventually(logged_a_cycle, timeout=60, what="a cycle in the pod's log")
    assert all({"message", "severity", "timestamp"} <= line.keys() for line in lines)
    assert any(line.get("object", {}).get("namespace") == TENANT for line in lines)
    assert EGP_KEY not in json.dumps(lines)


def _service_monitor_scrape_config(
    monitor: dict[str, Any], token_file: Path, node: Node
) -> dict[str, Any]:
    """The scrape job the Prometheus Operator makes of a ServiceMonitor's one endpoint: the
    addresses behind the named port of the Services its selector matches in its namespaces,
    with the bearer token file; scraped every second here instead of its interval. Debian's
    Prometheus is built without Kubernetes discovery, so the test reads the Endpoints as
    that discovery would, and gives Prometheus the targets."""
    spec = monitor["spec"]
    [endpoint] = spec["endpoints"]
    selector = ",".join(f"{k}={v}" for k, v in spec["selector"]["matchLabels"].items())
    targets = []
    for namespace in spec["namespaceSelector"]["matchNames"]:
        found = node.kubectl_ok("get", "endpoints", "-n", namespace, "-l", selector, "-o", "json")
        for endpoints in json.loads(found)["items"]:
            for subset in endpoints.get("subsets", []):
                ports = [p["port"] for p in subset["ports"] if p.get("name") == endpoint["port"]]
                targets += [
                    {
                        "targets": [f"{address['ip']}:{port}"],
                        "labels": {"pod": address["targetRef"]["name"]},
                    }
                    for address in subset.get("addresses", [])
                    for port in ports
                ]
    assert endpoint["bearerTokenFile"] == "/var/run/secrets/kubernetes.io/serviceaccount/token"
    meta = monitor["metadata"]
    return {
        "job_name": f"serviceMonitor/{meta['namespace']}/{meta['name']}/0",
        "honor_labels": endpoint.get("honorLabels", False),
        "metrics_path": endpoint["path"],
        "scheme": endpoint.get("scheme", "http"),
        "scrape_interval": "1s",
        "authorization": {"type": "Bearer", "credentials_file": str(token_file)},
        "static_configs": targets,
    }


def test_prometheus_scrapes_the_pod_as_the_service_monitor_says(
    node: Node, prometheus_bin_dir: Path, tmp_path: Path
) -> None:
    rendered = node.run(
        node.helm, "template", RELEASE, str(CHART), "-n", NAMESPACE,
        "--set", "metrics.serviceMonitor.enabled=true",
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    monitor = next(
        doc
        for doc in yaml.safe_load_all(rendered.stdout)
        if doc and doc["kind"] == "ServiceMonitor"
    )
    token_file = tmp_path / "token"
    token_file.write_text(service_account_token(node.cluster, MONITORING, PROMETHEUS))
    config = {"scrape_configs": [_service_monitor_scrape_config(monitor, token_file, node)]}
    with running_prometheus(prometheus_bin_dir, config, tmp_path) as url:
        [pod] = node.pods()
        up = eventually(
            lambda: [s for s in prometheus_query(url, "up") if s["value"][1] == "1"],
            timeout=60,
            what="Prometheus to scrape the pod",
        )
        assert [s["metric"]["pod"] for s in up] == [pod["metadata"]["name"]]
        models = eventually(
            lambda: prometheus_query(url, f'egp_operator_models{{namespace="{TENANT}"}}'),
            timeout=30,
            what="the tenant's series",
        )
        assert sum(float(s["value"][1]) for s in models) == len(UPSTREAM)


class PodStates:
    """Every operator pod's last seen container state, from a watch, so that a pod's end is
    known after the pod itself is gone."""

    def __init__(self, node: Node) -> None:
        self.last: dict[str, dict[str, Any]] = {}
        #: When each deleted pod's grace period ends (its deletionTimestamp).
        self.grace_ends: dict[str, datetime] = {}
        self._stop = threading.Event()
        self._api = node.cluster.api_client()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        core = client.CoreV1Api(self._api)
        while not self._stop.is_set():
            for event in watch.Watch().stream(
                core.list_namespaced_pod, NAMESPACE, label_selector=OPERATOR_PODS, timeout_seconds=2
            ):
                pod = self._api.sanitize_for_serialization(event["object"])
                name = pod["metadata"]["name"]
                if "deletionTimestamp" in pod["metadata"]:
                    ends = datetime.fromisoformat(pod["metadata"]["deletionTimestamp"])
                    self.grace_ends.setdefault(name, ends)
                for status in pod.get("status", {}).get("containerStatuses") or []:
                    self.last[name] = status["state"]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._api.close()


def test_an_upgrade_that_changes_a_setting_rolls_the_pod(node: Node) -> None:
    [old] = node.pods()
    old_name = old["metadata"]["name"]
    states = PodStates(node)
    try:
        values = _values(node.image, settings={"logFormat": "json", "statusHeartbeatSeconds": 1800})
        node.helm_release("upgrade", values)
        [new] = eventually(
            lambda: (
                [p for p in node.pods() if p["metadata"]["name"] != old_name and _ready(p)] or None
            ),
            timeout=120,
            what="the new pod to be Ready",
        )
        ended = eventually(
            lambda: states.last.get(old_name, {}).get("terminated"),
            timeout=60,
            what="the old pod's end",
        )
    finally:
        states.close()
    env = {e["name"]: e.get("value") for e in new["spec"]["containers"][0]["env"]}
    assert env["EGP_OPERATOR_STATUS_HEARTBEAT_SECONDS"] == "1800"
    # SIGTERM, and a clean exit of its own: not the SIGKILL at the end of the grace period.
    assert ended["exitCode"] == 0, ended
    # The API server sets deletionTimestamp to the delete's time plus the grace period.
    grace = old["spec"]["terminationGracePeriodSeconds"]
    sigterm = states.grace_ends[old_name] - timedelta(seconds=grace)
    took = (datetime.fromisoformat(ended["finishedAt"]) - sigterm).total_seconds()
    print(f"rolled: the old pod stopped {took:.0f} s after SIGTERM (grace {grace} s)")
    assert took < STOP_SECONDS < grace, f"the old pod took {took} s to stop"
    name = new["metadata"]["name"]
    eventually(lambda: _cycles(node.logs(name)), timeout=60, what="the new pod to sync")
    assert node.models() == len(UPSTREAM)


def _peering_priorities(node: Node) -> dict[str, int]:
    peering = json.loads(node.kubectl_ok("get", "clusterkopfpeering", "egp-operator", "-o", "json"))
    return {name: entry["priority"] for name, entry in (peering.get("status") or {}).items()}


def test_of_two_replicas_one_works_and_deleting_it_hands_over(node: Node) -> None:
    node.helm_release("upgrade", _values(node.image, replicaCount=2))
    pods = eventually(
        lambda: found if len(found := [p for p in node.pods() if _ready(p)]) == 2 else None,
        timeout=120,
        what="two Ready replicas",
    )
    names = [p["metadata"]["name"] for p in pods]
    priorities = eventually(
        lambda: found if set(names) <= set(found := _peering_priorities(node)) else None,
        timeout=60,
        what="both replicas in the peering",
    )
    # The one with the higher priority works; the other has paused (at once, once it saw its
    # peer) and syncs nothing while the first lives.
    active = max(names, key=lambda name: priorities[name])
    [standby] = [name for name in names if name != active]
    joined = datetime.now(UTC) + timedelta(seconds=5)
    eventually(
        lambda: len([t for t in _cycles(node.logs(active)) if t > joined]) >= 2,
        timeout=60,
        what="two cycles by the replica with the higher priority",
    )
    assert not [t for t in _cycles(node.logs(standby)) if t > joined], "both replicas synced"

    # The leaver's whole log, to its end, from a follower started before the delete.
    kubectl = [str(node.kubectl), "--kubeconfig", str(node.cluster.kubeconfig)]
    follower = subprocess.Popen(
        [*kubectl, "logs", "--follow", "-n", NAMESPACE, active],
        stdout=subprocess.PIPE,
        text=True,
    )
    deleted, deleted_at = time.monotonic(), datetime.now(UTC)
    node.kubectl_ok("delete", "pod", "-n", NAMESPACE, active, "--wait=false")

    def successors() -> dict[str, list[datetime]]:
        """Cycles since the delete, by the other pods: the standby, or the Deployment's
        replacement for the leaver, whichever has the higher priority."""
        found = {}
        for pod in node.pods():
            name = pod["metadata"]["name"]
            cycles = [t for t in _cycles(node.logs(name, missing_ok=True)) if t > deleted_at]
            if name != active and cycles:
                found[name] = cycles
        return found

    taken = eventually(successors, timeout=HANDOVER_SECONDS + 30, what="a replica to take over")
    took = time.monotonic() - deleted
    leaver = [json.loads(line) for line in follower.communicate(timeout=120)[0].splitlines()]
    assert any("SIGTERM" in line["message"] for line in leaver)
    assert len(taken) == 1, f"more than one replica took over: {taken}"
    [first] = [min(cycles) for cycles in taken.values()]
    assert max(_cycles(leaver)) < first, "the leaver and its successor synced at once"
    print(f"handover: {took:.1f} s from the delete to the successor's first cycle")
    assert took < HANDOVER_SECONDS, f"the source went {took:.1f} s without a sync"


def test_deploy_runs_the_image_too(node: Node) -> None:
    """After `helm uninstall`, `kubectl apply -k deploy/` (its image set to the local one, as
    `kustomize edit set image` does) and the tenant's Role from deploy/examples."""
    done = node.run(node.helm, "uninstall", RELEASE, "-n", NAMESPACE, "--wait")
    assert done.returncode == 0, done.stderr
    eventually(lambda: not node.pods(), timeout=120, what="the release's pods to go")
    repository, tag = node.image.rsplit(":", 1)
    documents = kustomize(node.kubectl, REPO / "deploy")
    for doc in documents:
        if doc["kind"] == "Deployment":
            [container] = doc["spec"]["template"]["spec"]["containers"]
            assert container["image"] == "egp-operator:latest"
            container["image"] = f"{repository}:{tag}"
    for doc in kustomize(node.kubectl, REPO / "deploy" / "examples"):
        if doc["kind"] in ("Role", "RoleBinding"):
            doc["metadata"]["namespace"] = TENANT
            documents.append(doc)
    node.kubectl_ok(
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        "-",
        stdin=yaml.safe_dump_all(documents),
    )
    node.kubectl_ok(
        "rollout", "status", "deployment/egp-operator", "-n", NAMESPACE, "--timeout=180s"
    )
    [pod] = node.pods()
    name = pod["metadata"]["name"]
    eventually(lambda: _cycles(node.logs(name)), timeout=60, what="deploy/'s pod to sync")
    assert node.models() == len(UPSTREAM)


@pytest.mark.usefixtures("node")  # inside the node's namespace
def test_nothing_in_the_namespace_tried_another_address() -> None:
    """netns.sh refuses, and counts, every packet sent or forwarded to an address outside
    loopback, the node's range and link-local multicast: none was, by the node, the pods or
    any test run in the namespace before this one. (To see one: `sysctl
    net.netfilter.nf_log_all_netns=1` and a LOG rule before the REJECT.)"""
    for chain in ("OUTPUT", "FORWARD"):
        listed = subprocess.run(
            ["iptables", "-n", "-v", "-x", "-L", chain],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        [refused] = [line.split() for line in listed if "REJECT" in line]
        assert refused[0] == "0", f"{refused[0]} packet(s) to another address: {chain}"
