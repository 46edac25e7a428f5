"""A real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager) on loopback.

The operator's end-to-end tests and the demo need the API server's real semantics (RBAC,
admission, CRD schema validation, resourceVersions, garbage collection), which no in-memory fake
gives, and this machine has no Docker for kind. So we run the pinned binaries that
``tools/kube/build.sh`` builds, each in its own process group, on free ports of 127.0.0.1.

Use it as a context manager in tests, or from a shell::

    python -m egp_testbench.cluster up --dir .cluster    # prints the kubeconfig path
    python -m egp_testbench.cluster down --dir .cluster
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from egp_testbench.processes import free_ports, repo_root, stop_group

__all__ = [
    "ClusterError",
    "LocalControlPlane",
    "default_cluster_dir",
    "find_bin_dir",
    "stop_from_state",
]

STATE_FILE = "state.json"
KUBECONFIG_FILE = "kubeconfig"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")
# Enough for namespaces to get their `default` ServiceAccount, tokens and kube-root-ca.crt,
# owner-based garbage collection, namespace deletion and aggregated RBAC roles; the rest
# (deployments, nodes, ...) would only burn CPU without a kubelet or scheduler.
DEFAULT_CONTROLLERS = (
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
    # A namespace's ResourceQuota on count/egpmodels.egp-operator.io is what platform teams
    # use to cap a tenant's objects: the tests refuse creates with it as the API server does.
    "resourcequota-controller",
)
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
KUBERNETES_SERVICE_IP = "10.0.0.1"


class ClusterError(RuntimeError):
    """The control plane could not be built, started or reached."""


@dataclass
class _Proc:
    """One control-plane process as recorded in state.json, enough to stop it from elsewhere."""

    name: str
    pid: int
    start_time: str | None  # /proc/<pid>/stat field 22: tells our pid from a reused one
    log: str


def default_cluster_dir() -> Path:
    """``$EGP_CLUSTER_DIR``, else ``.cluster/`` at the repo root (or the cwd outside one)."""
    env = os.environ.get("EGP_CLUSTER_DIR")
    if env:
        return Path(env)
    return (repo_root() or Path.cwd()) / ".cluster"


def find_bin_dir(*, build: bool = True) -> Path:
    """The folder holding the control-plane binaries.

    ``$EGP_KUBE_BIN_DIR`` wins; otherwise ``tools/kube/build.sh`` is asked, which builds them
    if ``build`` is true (slow when cold) or only checks the cache if it is false.
    """
    env = os.environ.get("EGP_KUBE_BIN_DIR")
    if env:
        bin_dir = Path(env)
    else:
        root = repo_root()
        if root is None:
            raise ClusterError("set EGP_KUBE_BIN_DIR: tools/kube/build.sh was not found")
        cmd = ["bash", str(root / "tools" / "kube" / "build.sh")]
        if not build:
            cmd.append("--check")
        # The build's progress goes to our stderr; its last stdout line is the bin dir.
        result = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)  # noqa: S603
        lines = result.stdout.strip().splitlines()
        if result.returncode != 0 or not lines:
            raise ClusterError(f"{' '.join(cmd)} failed (exit {result.returncode})")
        bin_dir = Path(lines[-1])
    missing = [b for b in BINARIES if not os.access(bin_dir / b, os.X_OK)]
    if missing:
        raise ClusterError(f"{bin_dir} lacks {', '.join(missing)}")
    return bin_dir


def port_is_free(port: int) -> bool:
    """True if nothing listens on 127.0.0.1:port (so a stopped cluster released it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As a server would: connections in TIME_WAIT do not make a port busy.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _proc_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (None if gone or unknown), to detect pid reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; fields after its closing paren are plain.
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[19]  # field 22 overall


def _is_running(pid: int, start_time: str | None) -> bool:
    """Whether ``pid`` is still the process we started (zombies count as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return True  # no /proc: trust kill(0)
    if stat[stat.rindex(")") + 2 :].split()[0] == "Z":
        return False
    return start_time is None or _proc_start_time(pid) == start_time


def _terminate(
    procs: list[_Proc], children: dict[int, subprocess.Popen[bytes]], timeout: float
) -> None:
    """Stop ``procs`` one after the other, in the given order: SIGTERM the process group,
    wait up to ``timeout``, then SIGKILL it.

    One at a time because the API server shuts down cleanly (and quickly) only while etcd
    still answers. Each process leads its own session (start_new_session), so its pid is its
    group id and signalling the group also reaches anything it forked.
    """
    stuck = []
    for p in procs:
        child = children.get(p.pid)

        def running(p: _Proc = p, child: subprocess.Popen[bytes] | None = child) -> bool:
            if child is not None:
                child.poll()  # reap our own child, or it lingers as a zombie
            return _is_running(p.pid, p.start_time)

        if not stop_group(p.pid, timeout=timeout, running=running):
            stuck.append(f"{p.name}[{p.pid}]")
    if stuck:
        raise ClusterError(f"could not stop {', '.join(stuck)}")


def stop_from_state(cluster_dir: Path, timeout: float = 20.0) -> bool:
    """Stop the cluster recorded in ``<cluster_dir>/state.json``, e.g. from another shell.

    Idempotent: returns False if nothing of it was running. Logs, PKI and the kubeconfig stay.
    """
    state_path = cluster_dir / STATE_FILE
    try:
        state = json.loads(state_path.read_text())
    except FileNotFoundError:
        return False
    procs = [_Proc(**p) for p in state.get("processes", [])]
    was_running = any(_is_running(p.pid, p.start_time) for p in procs)
    # Stop clients first and etcd last, so the API server can shut down cleanly.
    _terminate(list(reversed(procs)), {}, timeout)
    state["stopped"] = True
    state_path.write_text(json.dumps(state, indent=2) + "\n")
    return was_running


def _openssl(*args: str, cwd: Path) -> None:
    """Run openssl quietly, keeping its message if it fails (no ``cryptography`` dependency)."""
    result = subprocess.run(  # noqa: S603
        ["openssl", *args],  # noqa: S607
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ClusterError(f"openssl {' '.join(args)} failed: {result.stderr.strip()}")


def _make_pki(pki: Path, node_address: str | None = None) -> None:
    """A CA, an API server serving certificate it signed, and the service-account signing key.

    Our own CA (rather than the API server's self-signed one) is what the controller manager
    publishes as kube-root-ca.crt, and what the kubeconfig trusts. With a node, the serving
    certificate also names the node's address, where pods reach the API server.
    """
    pki.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "3650",
        "-subj",
        "/CN=egp-local-ca",
        cwd=pki,
    )
    names = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    addresses = ["127.0.0.1", KUBERNETES_SERVICE_IP, *([node_address] if node_address else [])]
    san = ",".join([f"DNS:{n}" for n in names] + [f"IP:{a}" for a in addresses])
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "apiserver.key",
        "-out",
        "apiserver.crt",
        "-days",
        "365",
        "-subj",
        "/CN=kube-apiserver",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-addext",
        f"subjectAltName={san}",
        "-addext",
        "basicConstraints=critical,CA:FALSE",
        "-addext",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        "-addext",
        "extendedKeyUsage=serverAuth",
        cwd=pki,
    )
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    for key in pki.glob("*.key"):
        key.chmod(0o600)


def _kubeconfig(server: str, ca_pem: bytes, user: str, token: str) -> str:
    """A kubeconfig (JSON, which kubectl and the clients read as YAML) with a bearer token."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "egp-local",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "egp-local", "context": {"cluster": "egp-local", "user": user}}],
        "current-context": "egp-local",
        "preferences": {},
    }
    return json.dumps(config, indent=2) + "\n"


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read: it holds credentials."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


#: Metadata of every request but the control plane's own chatter, logged once answered (a
#: watch: once its stream starts, and when it ends).
AUDIT_POLICY: Final = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    users: ["system:kube-controller-manager", "system:apiserver"]
  - level: Metadata
"""


class LocalControlPlane:
    """etcd + kube-apiserver + kube-controller-manager on 127.0.0.1, in ``directory``.

    ``directory`` gets ``kubeconfig`` (admin, ``system:masters``), ``logs/<process>.log``,
    ``pki/``, ``etcd/`` (wiped on each start: every start is a fresh cluster) and
    ``state.json`` (pids and ports, for :func:`stop_from_state`).
    """

    def __init__(
        self,
        bin_dir: Path | str,
        directory: Path | str,
        *,
        controllers: tuple[str, ...] = DEFAULT_CONTROLLERS,
        node_address: str | None = None,
        audit: bool = False,
        ready_timeout: float = 120.0,
        stop_timeout: float = 20.0,
    ) -> None:
        self.bin_dir = Path(bin_dir).resolve()
        self.dir = Path(directory).resolve()
        self.controllers = controllers
        self.node_address = node_address
        self.audit = audit
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.kubeconfig = self.dir / KUBECONFIG_FILE
        self.logs_dir = self.dir / "logs"
        self.pki_dir = self.dir / "pki"
        self.admin_token = ""
        self.etcd_port = self.etcd_peer_port = self.api_port = self.kcm_port = 0
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._procs: list[_Proc] = []
        self._detached = False
        self._lock = threading.Lock()

    @property
    def server(self) -> str:
        """The API server's URL."""
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def ca_file(self) -> Path:
        """The CA certificate that signed the API server's serving certificate."""
        return self.pki_dir / "ca.crt"

    @property
    def audit_log(self) -> Path:
        """With `audit`: one JSON line per request (its metadata, never a body) once answered,
        what a test reads to count who asked the API server what."""
        return self.logs_dir / "audit.log"

    def audit_events(self, *, after_line: int = 0) -> list[dict[str, Any]]:
        """The audit log's events from line `after_line` on (0: all)."""
        if not self.audit_log.exists():
            return []
        with self.audit_log.open() as lines:
            return [json.loads(line) for number, line in enumerate(lines) if number >= after_line]

    def audit_lines(self) -> int:
        """How many events the audit log holds now: a mark to read from later."""
        if not self.audit_log.exists():
            return 0
        with self.audit_log.open("rb") as lines:
            return sum(1 for _ in lines)

    @property
    def ports(self) -> dict[str, int]:
        """Every port this cluster listens on, by purpose."""
        return {
            "etcd": self.etcd_port,
            "etcd-peer": self.etcd_peer_port,
            "kube-apiserver": self.api_port,
            "kube-controller-manager": self.kcm_port,
        }

    @property
    def pids(self) -> dict[str, int]:
        """The pid of each running process, by name."""
        return {p.name: p.pid for p in self._procs}

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- starting ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the three processes and return once the API server is ready and the
        controller manager has given the ``default`` namespace its ServiceAccount.

        On any failure everything already started is stopped again.
        """
        if self._procs:
            raise ClusterError("already started")
        stop_from_state(self.dir, self.stop_timeout)  # a leftover from a killed run
        for sub in ("etcd", "pki", "logs"):
            shutil.rmtree(self.dir / sub, ignore_errors=True)
        self.logs_dir.mkdir(parents=True)
        (self.dir / "etcd").mkdir(mode=0o700)
        (self.etcd_port, self.etcd_peer_port, self.api_port, self.kcm_port) = free_ports(4)
        atexit.register(self._atexit)
        try:
            self._write_config()
            deadline = time.monotonic() + self.ready_timeout
            self._spawn("etcd", self._etcd_args())
            self._wait("etcd health", deadline, self._etcd_healthy)
            self._spawn("kube-apiserver", self._apiserver_args())
            self._wait("kube-apiserver /readyz", deadline, self._apiserver_ready)
            self._spawn("kube-controller-manager", self._controller_manager_args())
            self._wait("kube-controller-manager /healthz", deadline, self._kcm_healthy)
            self._wait("the default ServiceAccount", deadline, self._default_sa_exists)
        except BaseException:
            self.stop()
            raise

    def _write_config(self) -> None:
        _make_pki(self.pki_dir, self.node_address)
        self.admin_token = secrets.token_hex(24)
        kcm_token = secrets.token_hex(24)
        # token,user,uid,"group1,group2": admin is all-powerful; the controller manager
        # gets the user its built-in RBAC role is bound to, as in a real cluster.
        _write_private(
            self.pki_dir / "tokens.csv",
            f'{self.admin_token},admin,admin,"system:masters"\n'
            f"{kcm_token},system:kube-controller-manager,"
            "system:kube-controller-manager\n",
        )
        ca = (self.pki_dir / "ca.crt").read_bytes()
        _write_private(self.kubeconfig, _kubeconfig(self.server, ca, "admin", self.admin_token))
        _write_private(
            self.pki_dir / "controller-manager.kubeconfig",
            _kubeconfig(self.server, ca, "system:kube-controller-manager", kcm_token),
        )

    def _etcd_args(self) -> list[str]:
        client = f"http://127.0.0.1:{self.etcd_port}"
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        return [
            "--name=egp",
            f"--data-dir={self.dir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=egp={peer}",
            "--initial-cluster-state=new",
            # A throwaway cluster: durability is not worth the fsync latency.
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]

    def _apiserver_args(self) -> list[str]:
        pki = self.pki_dir
        return [
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            *self._address_args(),
            f"--secure-port={self.api_port}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--token-auth-file={pki / 'tokens.csv'}",
            f"--service-account-issuer={self.server}",
            f"--service-account-key-file={pki / 'sa.key'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--authorization-mode=RBAC",
            # Added to the defaults (which already hold them) to state what tests rely on.
            "--enable-admission-plugins=NamespaceLifecycle,ServiceAccount",
            "--profiling=false",
            *self._audit_args(),
        ]

    def _audit_args(self) -> list[str]:
        if not self.audit:
            return []
        policy = self.pki_dir / "audit-policy.yaml"
        policy.write_text(AUDIT_POLICY)
        return [
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
            "--audit-log-maxsize=200",  # MB; then one backup, so a long session stays bounded
            "--audit-log-maxbackup=1",
        ]

    def _address_args(self) -> list[str]:
        """On loopback alone, or with a node: then also on the node's address (inside the
        network namespace the node runs in), which the `kubernetes` Service's endpoints name,
        so that pods reach the API server through its Service as in a real cluster."""
        if self.node_address is None:
            # No kubelet or node will ever serve the `kubernetes` Service's endpoints.
            return [
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none",
            ]
        return [
            "--bind-address=0.0.0.0",
            f"--advertise-address={self.node_address}",
            # For logs and exec, reach the kubelet at the node's address, never by a name that
            # would need a DNS server.
            "--kubelet-preferred-address-types=InternalIP",
        ]

    def _controller_manager_args(self) -> list[str]:
        kubeconfig = self.pki_dir / "controller-manager.kubeconfig"
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.kcm_port}",
            f"--cert-dir={self.pki_dir / 'controller-manager'}",
            f"--controllers={','.join(self.controllers)}",
            "--leader-elect=false",
            # Each controller acts as its own ServiceAccount under RBAC, as in real clusters.
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={self.pki_dir / 'sa.key'}",
            f"--root-ca-file={self.pki_dir / 'ca.crt'}",
            "--profiling=false",
        ]

    def run_beside(self, name: str, executable: Path, args: list[str]) -> None:
        """Start another process that lives and dies with the control plane (a node's), logged
        in ``logs/<name>.log``; `stop` stops it before the control plane's own, in the
        reverse of the order they started."""
        self._spawn(name, args, executable)

    def wait_for(self, what: str, timeout: float, check: Callable[[], bool]) -> None:
        """Poll ``check()`` until it is true, failing fast if any process died meanwhile."""
        self._wait(what, time.monotonic() + timeout, check)

    def _spawn(self, name: str, args: list[str], executable: Path | None = None) -> None:
        """Start one binary in its own session, its output going to ``logs/<name>.log``."""
        cmd = [str(executable or self.bin_dir / name), *args]
        # Killed with us even if we die by SIGKILL or os._exit (where atexit does not run).
        # Linux ties this to the forking *thread*, so only do it from the main thread.
        if (
            not self._detached
            and shutil.which("setpriv")
            and threading.current_thread() is threading.main_thread()
        ):
            cmd = ["setpriv", "--pdeathsig", "KILL", "--", *cmd]
        log_path = self.logs_dir / f"{name}.log"
        with log_path.open("ab") as log:
            child = subprocess.Popen(  # noqa: S603
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.dir,
            )
        self._children[child.pid] = child
        self._procs.append(_Proc(name, child.pid, _proc_start_time(child.pid), str(log_path)))
        self._write_state()

    def _write_state(self) -> None:
        state = {
            "server": self.server,
            "kubeconfig": str(self.kubeconfig),
            "bin_dir": str(self.bin_dir),
            "ports": self.ports,
            "processes": [vars(p) for p in self._procs],
            "stopped": False,
        }
        tmp = self.dir / f".{STATE_FILE}.tmp"
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self.dir / STATE_FILE)

    def _wait(self, what: str, deadline: float, check: Callable[[], bool]) -> None:
        """Poll ``check()`` until it is true, failing fast if a process died meanwhile."""
        while True:
            for p in self._procs:
                child = self._children[p.pid]
                if child.poll() is not None:
                    raise ClusterError(
                        f"{p.name} exited with {child.returncode} while waiting for {what};"
                        f" end of {p.log}:\n{_tail(Path(p.log))}"
                    )
            if check():
                return
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {p.log}\n{_tail(Path(p.log))}" for p in self._procs)
                raise ClusterError(f"timed out waiting for {what}\n{logs}")
            time.sleep(0.2)

    # ---- probes --------------------------------------------------------------------------

    def _get(self, url: str, *, verify: bool = True, token: str | None = None) -> tuple[int, bytes]:
        """A GET returning (status, body); (0, b"") when the server does not answer yet."""
        ctx: ssl.SSLContext | None = None
        if url.startswith("https"):
            if verify:
                ctx = ssl.create_default_context(cafile=str(self.ca_file))
            else:  # the controller manager's self-signed serving certificate
                ctx = ssl._create_unverified_context()  # noqa: S323
        request = urllib.request.Request(url)  # noqa: S310
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=5, context=ctx) as resp:  # noqa: S310
                return int(resp.status), bytes(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, err.read()
        except (OSError, ssl.SSLError):
            return 0, b""

    def _etcd_healthy(self) -> bool:
        status, body = self._get(f"http://127.0.0.1:{self.etcd_port}/health")
        return status == 200 and b'"true"' in body

    def _apiserver_ready(self) -> bool:
        return self._get(f"{self.server}/readyz", token=self.admin_token)[0] == 200

    def _kcm_healthy(self) -> bool:
        return self._get(f"https://127.0.0.1:{self.kcm_port}/healthz", verify=False)[0] == 200

    def _default_sa_exists(self) -> bool:
        url = f"{self.server}/api/v1/namespaces/default/serviceaccounts/default"
        return self._get(url, token=self.admin_token)[0] == 200

    def is_ready(self) -> bool:
        """Whether the API server answers /readyz with 200 now."""
        return self._apiserver_ready()

    # ---- using and stopping --------------------------------------------------------------

    def api_client(self) -> Any:
        """A new ``kubernetes.client.ApiClient`` logged in as admin (close it when done)."""
        from kubernetes import config  # imported late: the CLI does not need it

        return config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig)
        )

    def detach(self) -> None:
        """Leave the processes running when this Python process exits (for ``up``)."""
        self._detached = True

    def _proc(self, name: str) -> _Proc:
        return next(p for p in self._procs if p.name == name)

    def _forget(self, proc: _Proc) -> None:
        """`proc` has exited: no longer one of ours."""
        self._procs.remove(proc)
        self._children.pop(proc.pid, None)

    def restart(self, name: str, *, sig: int = signal.SIGTERM) -> None:
        """Stop one process (``sig``: SIGTERM for a clean stop, SIGKILL for a crash) and start
        it again on the same ports and data, for fault tests; returns once it is healthy."""
        args = {
            "etcd": self._etcd_args,
            "kube-apiserver": self._apiserver_args,
            "kube-controller-manager": self._controller_manager_args,
        }[name]()
        with self._lock:
            proc = self._proc(name)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            _terminate([proc], self._children, self.stop_timeout)
            self._forget(proc)
        deadline = time.monotonic() + self.ready_timeout
        health = {
            "etcd": self._etcd_healthy,
            "kube-apiserver": self._apiserver_ready,
            "kube-controller-manager": self._kcm_healthy,
        }[name]
        while True:
            self._spawn(name, args)
            try:
                self._wait(f"{name} after a restart", deadline, health)
                break
            except ClusterError as error:
                # After a SIGKILL the killed server's connections can hold its port for a few
                # seconds more (bind: address already in use): start it again until the
                # deadline.
                if "address already in use" not in str(error) or time.monotonic() > deadline:
                    raise
                with self._lock:
                    self._forget(self._proc(name))
                time.sleep(0.5)
        if name == "etcd":
            self._wait("kube-apiserver /readyz", deadline, self._apiserver_ready)

    def stop(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL after ``stop_timeout``) and wait for it.

        Safe to call twice; logs, PKI and the kubeconfig stay for post-mortems.
        """
        with self._lock:
            procs, self._procs = self._procs, []
            try:
                _terminate(list(reversed(procs)), self._children, self.stop_timeout)
            finally:
                self._children.clear()
                with contextlib.suppress(OSError, ValueError):
                    state_path = self.dir / STATE_FILE
                    state = json.loads(state_path.read_text())
                    state["stopped"] = True
                    state_path.write_text(json.dumps(state, indent=2) + "\n")

    def _atexit(self) -> None:
        if not self._detached:
            self.stop()


# ---- command line ------------------------------------------------------------------------


def _state_is_up(cluster_dir: Path) -> bool:
    """Whether state.json describes a cluster whose processes all still run."""
    try:
        state = json.loads((cluster_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return False
    procs = [_Proc(**p) for p in state.get("processes", [])]
    return len(procs) == len(BINARIES) and all(_is_running(p.pid, p.start_time) for p in procs)


def _cmd_up(args: argparse.Namespace) -> int:
    cluster_dir: Path = args.dir.resolve()
    if _state_is_up(cluster_dir):
        print(cluster_dir / KUBECONFIG_FILE)
        return 0
    bin_dir = find_bin_dir(build=True)
    cluster_dir.mkdir(parents=True, exist_ok=True)
    plane = LocalControlPlane(bin_dir, cluster_dir, ready_timeout=args.timeout)
    # Detached before starting: the processes must outlive this command, and must not get
    # a parent-death signal tied to it.
    plane.detach()
    started = time.monotonic()
    plane.start()
    print(
        f"control plane ready at {plane.server} in {time.monotonic() - started:.1f} s;"
        f" logs in {plane.logs_dir}",
        file=sys.stderr,
    )
    print(plane.kubeconfig)
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    cluster_dir: Path = args.dir.resolve()
    stopped = stop_from_state(cluster_dir)
    print(
        f"control plane in {cluster_dir} {'stopped' if stopped else 'was not running'}",
        file=sys.stderr,
    )
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    up = _state_is_up(args.dir.resolve())
    print("up" if up else "down")
    return 0 if up else 1


def main(argv: list[str] | None = None) -> int:
    """``up`` / ``down`` / ``status`` of a local control plane kept in a folder."""
    parser = argparse.ArgumentParser(
        prog="python -m egp_testbench.cluster",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, help_ in (
        ("up", _cmd_up, "start in the background; print the kubeconfig path once ready"),
        ("down", _cmd_down, "stop the cluster started by `up` (idempotent)"),
        ("status", _cmd_status, "print up/down; exit 0 if up"),
    ):
        cmd = sub.add_parser(name, help=help_)
        cmd.add_argument(
            "--dir",
            type=Path,
            default=default_cluster_dir(),
            help="cluster folder (default: $EGP_CLUSTER_DIR or .cluster/)",
        )
        cmd.set_defaults(func=func)
    sub.choices["up"].add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for readiness (default: 120)"
    )
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ClusterError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
