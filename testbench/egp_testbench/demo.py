"""`make demo`: the whole product on a laptop, with no cluster and no EGP account.

Starts the local control plane, a local EGP server with a few dozen realistic models and the
operator (each in the background, logs under the demo folder), installs the CRDs, creates a
Secret and an EGPSource, shows the mirror once it is complete, flips one model to failed
upstream and shows the change and its Warning event. `down` stops it all.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from egp_testbench.cluster import default_cluster_dir, find_bin_dir
from egp_testbench.processes import free_port, repo_root, stop_group

API_KEY = "demo-key"
ACCOUNT = "acct-demo"
NAMESPACE = "default"
SOURCE = "demo"
MODELS = 36
DEADLINE = 120.0


def _say(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def _wait(what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: timed out waiting for {what}")
        time.sleep(0.5)


class Demo:
    def __init__(self, directory: Path) -> None:
        self.dir = directory.resolve()
        self.cluster_dir = self.dir / "cluster"
        self.kubeconfig = self.cluster_dir / "kubeconfig"
        self.bin_dir = find_bin_dir(build=True)
        self.env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        }

    def kubectl(self, *args: str, stdin: str | None = None, show: bool = True) -> str:
        command = ["kubectl", *args]
        if show:
            print(f"$ {' '.join(command)}", flush=True)
        done = subprocess.run(  # noqa: S603 - our own kubectl, our own arguments
            command, input=stdin, env=self.env, capture_output=True, text=True, check=True
        )
        if show:
            print(done.stdout, end="", flush=True)
        return done.stdout

    def background(self, name: str, command: list[str]) -> None:
        """Start a process that outlives this command; its pid goes to `<name>.pid`."""
        log = (self.dir / f"{name}.log").open("wb")
        process = subprocess.Popen(  # noqa: S603 - our own command line
            command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        (self.dir / f"{name}.pid").write_text(str(process.pid))

    def up(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.down(quiet=True)
        _say("Starting a local Kubernetes control plane (kube-apiserver, etcd, controller-manager)")
        subprocess.run(  # noqa: S603
            [
                sys.executable,
                "-m",
                "egp_testbench.cluster",
                "up",
                "--dir",
                str(self.cluster_dir),
            ],
            env=self.env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        port = free_port()
        egp_url = f"http://127.0.0.1:{port}"
        _say(f"Starting a local EGP server with {MODELS} models at {egp_url}")
        self.background(
            "fake-egp",
            [
                sys.executable,
                "-m",
                "egp_testbench.fake_egp",
                "--port",
                str(port),
                "--api-key",
                API_KEY,
                "--account-id",
                ACCOUNT,
                "--models",
                str(MODELS),
                "--seed",
                "7",
            ],
        )
        _wait("the local EGP server", lambda: _answers(f"{egp_url}/_admin/health"))

        _say("Installing the CRDs")
        self.kubectl("apply", "--server-side", "-k", str(_repo_root() / "crds"))
        self.kubectl(
            "wait",
            "--for=condition=Established",
            "crd/egpsources.egp-operator.io",
            "crd/egpmodels.egp-operator.io",
            "--timeout=60s",
        )

        _say("Starting the operator")
        self.env |= {
            "EGP_OPERATOR_PROBE_HOST": "127.0.0.1",
            "EGP_OPERATOR_LIVENESS_PORT": str(free_port()),
            "EGP_OPERATOR_METRICS_PORT": str(free_port()),
        }
        self.background("operator", [sys.executable, "-m", "egp_operator.cli", "run"])

        _say("Creating a Secret with the API key and an EGPSource")
        self.kubectl("apply", "-f", "-", stdin=_manifests(egp_url))
        _wait("the mirror", lambda: self._mirrored() >= MODELS)
        self.kubectl("get", "egpsources,egpmodels", "-n", NAMESPACE)

        model = self._a_ready_model()
        _say(f"Upstream, model {model['status']['name']!r} fails")
        httpx.patch(
            f"{egp_url}/_admin/accounts/{ACCOUNT}/models/{model['spec']['modelID']}",
            json={
                "status": "failed",
                "status_reason": "Container exited with code 137 (OOMKilled)",
            },
        ).raise_for_status()
        name = model["metadata"]["name"]
        _wait("the failure to reach the cluster", lambda: self._phase(name) == "Failed")
        self.kubectl("get", "egpmodel", name, "-n", NAMESPACE)
        _wait(
            "its event",
            lambda: (
                "Failed"
                in self.kubectl(
                    "get",
                    "events",
                    "-n",
                    NAMESPACE,
                    f"--field-selector=involvedObject.name={name}",
                    show=False,
                )
            ),
        )
        self.kubectl(
            "get", "events", "-n", NAMESPACE, f"--field-selector=involvedObject.name={name}"
        )
        self.kubectl(
            "wait",
            "--for=condition=Ready=false",
            f"egpmodel/{name}",
            "-n",
            NAMESPACE,
            "--timeout=10s",
        )

        _say("The demo keeps running")
        print(f"  export KUBECONFIG={self.kubeconfig}")
        print(f"  export PATH={self.bin_dir}:$PATH   # the matching kubectl")
        print("  kubectl get egpmodels -A; kubectl describe egpsource demo")
        print(f"  logs: {self.dir}/operator.log, {self.dir}/fake-egp.log")
        print("  stop it with: make demo-down")

    def down(self, *, quiet: bool = False) -> None:
        for name in ("operator", "fake-egp"):
            pid_file = self.dir / f"{name}.pid"
            if pid_file.exists():
                stop_group(int(pid_file.read_text()), timeout=15)
                pid_file.unlink()
        subprocess.run(  # noqa: S603
            [
                sys.executable,
                "-m",
                "egp_testbench.cluster",
                "down",
                "--dir",
                str(self.cluster_dir),
            ],
            env=self.env,
            check=True,
            capture_output=quiet,
        )

    def _items(self) -> list[dict[str, Any]]:
        out = self.kubectl("get", "egpmodels", "-n", NAMESPACE, "-o", "json", show=False)
        items: list[dict[str, Any]] = json.loads(out)["items"]
        return items

    def _mirrored(self) -> int:
        return sum(1 for item in self._items() if item.get("status", {}).get("phase"))

    def _a_ready_model(self) -> dict[str, Any]:
        ready = [i for i in self._items() if i["status"].get("phase") == "Ready"]
        return sorted(ready, key=lambda i: i["metadata"]["name"])[0]

    def _phase(self, name: str) -> str:
        out = self.kubectl(
            "get", "egpmodel", name, "-n", NAMESPACE, "-o", "jsonpath={.status.phase}", show=False
        )
        return out


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).is_success
    except httpx.TransportError:
        return False


def _repo_root() -> Path:
    root = repo_root()
    if root is None:
        raise RuntimeError("the demo runs from a checkout of egp-operator (it applies crds/)")
    return root


def _manifests(egp_url: str) -> str:
    return f"""\
apiVersion: v1
kind: Secret
metadata:
  name: egp-credentials
  namespace: {NAMESPACE}
stringData:
  apiKey: {API_KEY}
---
apiVersion: egp-operator.io/v1alpha1
kind: EGPSource
metadata:
  name: {SOURCE}
  namespace: {NAMESPACE}
spec:
  baseURL: {egp_url}
  accountID: {ACCOUNT}
  credentialsSecretRef:
    name: egp-credentials
    key: apiKey
  refreshInterval: 10s
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m egp_testbench.demo")
    parser.add_argument("action", choices=("up", "down"))
    parser.add_argument("--dir", type=Path, default=default_cluster_dir() / "demo")
    args = parser.parse_args(argv)
    demo = Demo(args.dir)
    if args.action == "up":
        demo.up()
    else:
        demo.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
