"""A Kubernetes node beside the local control plane: kube-scheduler, kube-proxy, containerd with
runc and a CNI bridge, and a kubelet, so that the operator's image runs as a real Pod.

The kubelet refuses a loopback node address, so the node's whole world (the control plane, this
node, the local EGP server and the tests themselves) runs inside a network namespace of its own,
which ``tools/node/netns.sh`` creates with the node's address on a link that leads nowhere else:
no packet of it can leave the namespace. Pods get addresses on a bridge inside it, and reach the
API server through the `kubernetes` Service, which kube-proxy routes to the node's address.

There is no registry of images: the pause image is Debian's static ``catatonit`` in pause mode,
built with podman, and every image a test needs is copied from podman's store into containerd's.

Versions: the kubelet, kube-scheduler and kube-proxy are built from the same pinned Go modules as
the control plane (``tools/node/build.sh``). The machine's cgroups are v1 (with a cgroup2 mount
beside them), which a kubelet since 1.35 accepts only with ``failCgroupV1: false``; containerd is
Debian's 1.6.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from egp_testbench.cluster import ClusterError, LocalControlPlane
from egp_testbench.processes import free_ports

__all__ = ["NODE_ADDRESS", "NODE_CONTROLLERS", "NODE_NAME", "LocalNode", "in_node_namespace"]

NODE_NAME = "egp-node"
#: From the range set aside for benchmarking networks (RFC 2544), and only inside the node's
#: own network namespace: the node's address, and its pods' subnet.
NODE_ADDRESS = "198.18.0.1"
POD_SUBNET = "198.18.1.0/24"
PAUSE_IMAGE = "localhost/egp-pause:catatonit"
#: Pause mode: sleep until signalled, as the pause container must.
PAUSE_CONTAINERFILE = """FROM scratch
COPY pause /pause
USER 65535:65535
ENTRYPOINT ["/pause", "-P"]
"""
#: Every pod's cgroup is under this one (in each v1 hierarchy): netns.sh names one per run, and
#: empties it at the end.
CGROUP_ROOT = os.environ.get("EGP_NODE_CGROUP", "/egp-node")
CGROUP_V1 = Path("/sys/fs/cgroup")
#: The control plane's controllers a node needs, added to the usual ones: Deployments make
#: ReplicaSets make Pods, a new node loses its not-ready taint once its kubelet is Ready, and
#: Services get the endpoints kube-proxy and Prometheus's discovery read.
NODE_CONTROLLERS = (
    "deployment-controller",
    "replicaset-controller",
    "node-lifecycle-controller",
    "endpoints-controller",
    "endpointslice-controller",
    "pod-garbage-collector-controller",
)


def in_node_namespace() -> bool:
    """Whether this process runs where the node's address is on an interface (inside the
    namespace ``tools/node/netns.sh`` made)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((NODE_ADDRESS, 0))
        except OSError:
            return False
    return True


def _run(*command: str, stdin: bytes | None = None, timeout: float = 300) -> bytes:
    done = subprocess.run(  # noqa: S603
        command, input=stdin, capture_output=True, check=False, timeout=timeout
    )
    if done.returncode != 0:
        raise ClusterError(f"{' '.join(command)} failed: {done.stderr.decode(errors='replace')}")
    return done.stdout


def _which(name: str) -> Path:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if not found:
        raise ClusterError(f"{name} is not installed (tools/node/setup.sh installs it)")
    return Path(found)


class LocalNode:
    """The node `NODE_NAME` of `cluster` (started with ``node_address=NODE_ADDRESS`` and
    `NODE_CONTROLLERS`), with ``images`` from podman's store; its processes are the cluster's,
    stopped with it."""

    def __init__(
        self,
        cluster: LocalControlPlane,
        bin_dir: Path,
        directory: Path,
        images: Sequence[str] = (),
        *,
        ready_timeout: float = 180.0,
    ) -> None:
        self.cluster = cluster
        self.bin_dir = bin_dir
        self.dir = directory
        self.images = tuple(images)
        self.ready_timeout = ready_timeout
        self.containerd_socket = self.dir / "containerd" / "containerd.sock"

    def start(self) -> None:
        if not in_node_namespace():
            raise ClusterError(
                f"{NODE_ADDRESS} is on no interface here: run inside tools/node/netns.sh"
            )
        if self.cluster.node_address != NODE_ADDRESS:
            raise ClusterError(f"the control plane must be started with {NODE_ADDRESS=}")
        self.dir.mkdir(parents=True, exist_ok=True)
        (
            kubelet_port,
            kubelet_healthz_port,
            scheduler_port,
            proxy_healthz_port,
            proxy_metrics_port,
        ) = free_ports(5)
        self._make_cgroup_root()
        self._start_containerd()
        self._load_images()
        kubeconfig = str(self.cluster.kubeconfig)
        self.cluster.run_beside(
            "kube-scheduler",
            self.bin_dir / "kube-scheduler",
            [
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={scheduler_port}",
                "--leader-elect=false",
            ],
        )
        self.cluster.run_beside(
            "kube-proxy",
            self.bin_dir / "kube-proxy",
            [f"--config={self._kube_proxy_config(proxy_healthz_port, proxy_metrics_port)}"],
        )
        self.cluster.run_beside(
            "kubelet",
            self.bin_dir / "kubelet",
            [
                f"--config={self._kubelet_config(kubelet_port, kubelet_healthz_port)}",
                f"--kubeconfig={kubeconfig}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_ADDRESS}",
                f"--root-dir={self.dir / 'kubelet'}",
                f"--cert-dir={self.dir / 'kubelet-pki'}",
            ],
        )
        self.cluster.wait_for(f"the node {NODE_NAME} to be Ready", self.ready_timeout, self._ready)

    def stop(self) -> None:
        """Kill every pod's processes (their cgroups are all under `CGROUP_ROOT`), then stop the
        control plane with the node's processes: containerd's shims would otherwise keep the
        containers running after it."""
        for procs in CGROUP_V1.glob(f"pids{CGROUP_ROOT}/**/cgroup.procs"):
            for pid in procs.read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        self.cluster.stop()

    # ---- the container runtime -----------------------------------------------------------

    def _make_cgroup_root(self) -> None:
        """The kubelet's cgroupRoot, in every v1 hierarchy (it refuses to start without it); a
        new cpuset gets its parent's CPUs and memory nodes, or no task could join it."""
        for hierarchy in CGROUP_V1.iterdir():
            if not (hierarchy / "cgroup.procs").exists() or hierarchy.name == "unified":
                continue
            root = hierarchy / CGROUP_ROOT.strip("/")
            root.mkdir(exist_ok=True)
            for name in ("cpuset.cpus", "cpuset.mems"):
                if (root / name).exists() and not (root / name).read_text().strip():
                    (root / name).write_text((hierarchy / name).read_text())

    def _start_containerd(self) -> None:
        root = self.dir / "containerd"
        cni = self.dir / "cni"
        cni.mkdir(parents=True, exist_ok=True)
        (cni / "10-egp-pods.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "0.4.0",
                    "name": "egp-pods",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": "egp-pods0",
                            "isGateway": True,
                            "ipMasq": False,
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "dataDir": str(self.dir / "cni-ipam"),
                                "ranges": [[{"subnet": POD_SUBNET}]],
                                "routes": [{"dst": "0.0.0.0/0"}],
                            },
                        }
                    ],
                },
                indent=2,
            )
        )
        config = root / "config.toml"
        root.mkdir(parents=True, exist_ok=True)
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        config.write_text(
            f"""version = 2
root = "{root / "root"}"
state = "{root / "state"}"
[grpc]
  address = "{self.containerd_socket}"
[ttrpc]
  address = "{self.containerd_socket}.ttrpc"
[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  # A negative oom_score_adj (the sandbox's -998) needs CAP_SYS_RESOURCE, which this machine
  # does not grant even to root: runc would fail every sandbox ("can't get final child's PID").
  restrict_oom_score_adj = true
[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
[{cri}.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "{cni}"
"""
        )
        self.cluster.run_beside("containerd", _which("containerd"), [f"--config={config}"])
        self.cluster.wait_for("containerd", 60, self._containerd_answers)

    def _ctr(self, *args: str, stdin: bytes | None = None) -> bytes:
        return _run(
            str(_which("ctr")),
            f"--address={self.containerd_socket}",
            "--namespace=k8s.io",
            *args,
            stdin=stdin,
        )

    def _containerd_answers(self) -> bool:
        if not self.containerd_socket.exists():
            return False
        try:
            self._ctr("version")
        except ClusterError:
            return False
        return True

    def _load_images(self) -> None:
        """The pause image and ``images``, from podman's store into containerd's."""
        podman = str(_which("podman"))
        if subprocess.run([podman, "image", "exists", PAUSE_IMAGE], check=False).returncode:  # noqa: S603
            with tempfile.TemporaryDirectory() as context:
                shutil.copy(_which("catatonit"), Path(context) / "pause")
                (Path(context) / "Containerfile").write_text(PAUSE_CONTAINERFILE)
                _run(podman, "build", "--quiet", f"--tag={PAUSE_IMAGE}", context)
        for image in (PAUSE_IMAGE, *self.images):
            archive = _run(podman, "save", "--format=docker-archive", image)
            self._ctr("images", "import", "--no-unpack=false", "-", stdin=archive)

    # ---- configuration ---------------------------------------------------------------------

    def _kubelet_config(self, port: int, healthz_port: int) -> Path:
        path = self.dir / "kubelet.yaml"
        (self.dir / "resolv.conf").write_text("")
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # The machine's cgroups are v1; kubelets since 1.35 refuse them unless told.
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            # Every pod's cgroup under one root of its own, which netns.sh empties at the end.
            "cgroupRoot": CGROUP_ROOT,
            "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "address": NODE_ADDRESS,
            "port": port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": healthz_port,
            # The API server reaches it for logs and exec without a client certificate.
            "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
            "authorization": {"mode": "AlwaysAllow"},
            "resolvConf": str(self.dir / "resolv.conf"),
            "podLogsDir": str(self.dir / "pod-logs"),
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False,
            "syncFrequency": "5s",
            "fileCheckFrequency": "5s",
        }
        path.write_text(json.dumps(config, indent=2))
        return path

    def _kube_proxy_config(self, healthz_port: int, metrics_port: int) -> Path:
        path = self.dir / "kube-proxy.yaml"
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.cluster.kubeconfig)},
            "hostnameOverride": NODE_NAME,
            "mode": "iptables",
            "clusterCIDR": POD_SUBNET,
            "healthzBindAddress": f"127.0.0.1:{healthz_port}",
            "metricsBindAddress": f"127.0.0.1:{metrics_port}",
            # Leave the kernel's conntrack settings as they are.
            "conntrack": {"maxPerCore": 0, "min": 0},
        }
        path.write_text(json.dumps(config, indent=2))
        return path

    # ---- state -----------------------------------------------------------------------------

    def _ready(self) -> bool:
        """Ready, and untainted: the node-lifecycle controller has taken its not-ready taint
        off, so the scheduler places pods on it."""
        from kubernetes import client

        with self.cluster.api_client() as api, contextlib.suppress(client.ApiException):
            node = api.sanitize_for_serialization(client.CoreV1Api(api).read_node(NODE_NAME))
            conditions = node.get("status", {}).get("conditions", [])
            taints = node.get("spec", {}).get("taints", [])
            ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
            return ready and not any(t["key"] == "node.kubernetes.io/not-ready" for t in taints)
        return False
