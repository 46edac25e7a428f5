"""External Secrets Operator (ESO) as the benchmark's peer: the binary `tools/eso/build.sh`
builds (upstream's v0.16.2 controller, SecretStore, ClusterSecretStore and ExternalSecret
reconcilers, fake provider only), run in its own process group against the bench's control
plane, and the objects that give it the same shape of work as the operator's sources: one
fake SecretStore per namespace and ExternalSecrets refreshed every `refresh`."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from bench.kubeapi import AdminKube, load_crds
from bench.procs import BenchError, cpu_seconds, memory
from egp_testbench.processes import free_port, stop_group

REPO: Final = Path(__file__).resolve().parents[1]
BUILD_SCRIPT: Final = REPO / "tools" / "eso" / "build.sh"
ESO_BINARY: Final = "external-secrets"
ESO_GROUP: Final = "external-secrets.io"
ESO_VERSION: Final = "v1"
#: The fake provider's one key, which every ExternalSecret maps.
FAKE_KEY: Final = "egp-key"
STORE_NAME: Final = "egp-fake"
_STOP_TIMEOUT: Final = 30.0


def eso_bin_dir(build: bool = False) -> Path:
    """The folder holding `external-secrets`: `tools/eso/build.sh --check` (or, with `build`,
    the build itself, minutes when cold; its progress goes to our stderr)."""
    command = ["bash", str(BUILD_SCRIPT)] if build else ["bash", str(BUILD_SCRIPT), "--check"]
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)  # noqa: S603
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise BenchError(f"{' '.join(command)} failed (exit {result.returncode})")
    return Path(lines[-1])


def eso_crds_dir(bin_dir: Path | None = None) -> Path:
    """The ESO CRDs the build put beside the binary (ExternalSecret, SecretStore,
    ClusterSecretStore)."""
    return (bin_dir or eso_bin_dir()).parent / "crds"


class ESOProcess:
    """One ESO controller (no leader election, upstream's default of one concurrent reconcile
    per controller), its log in `log_file`, its /metrics on a free loopback port."""

    def __init__(
        self,
        kubeconfig: Path,
        log_file: Path,
        *,
        bin_dir: Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        """Builds the binary first if it is not built yet (`bin_dir` skips the lookup). ESO's
        CRDs must be served already (`apply_eso_crds`)."""
        self.bin_dir = bin_dir or eso_bin_dir(build=True)
        self.log_file = log_file
        self.metrics_port = free_port()
        command = [
            str(self.bin_dir / ESO_BINARY),
            f"--kubeconfig={kubeconfig}",
            f"--metrics-addr=127.0.0.1:{self.metrics_port}",
            "--enable-leader-election=false",
            *extra_args,
        ]
        self._log = log_file.open("wb")
        self.process = subprocess.Popen(  # noqa: S603 - our own command line
            command, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.pid = self.process.pid

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60) -> None:
        """Until the ExternalSecret controller has started its workers (its caches synced)."""
        deadline = time.monotonic() + timeout
        while not any(
            "Starting workers" in line and '"externalsecret"' in line
            for line in self.log().splitlines()
        ):
            if not self.alive():
                raise BenchError(f"ESO exited with {self.process.returncode}: see {self.log_file}")
            if time.monotonic() > deadline:
                raise BenchError(f"timed out after {timeout:.0f} s waiting for ESO to start")
            time.sleep(0.1)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def memory(self) -> dict[str, int]:
        """VmRSS and VmHWM (peak RSS), in bytes."""
        return memory(self.pid)

    def stop(self) -> None:
        """SIGTERM to the whole group; SIGKILL what is still there after 30 s."""
        stop_group(self.pid, timeout=_STOP_TIMEOUT, running=self.alive)
        self._log.close()


def eso_path(namespace: str, plural: str, name: str = "") -> str:
    base = f"/apis/{ESO_GROUP}/{ESO_VERSION}/namespaces/{namespace}/{plural}"
    return f"{base}/{name}" if name else base


async def apply_eso_crds(kube: AdminKube, crds_dir: Path | None = None) -> list[str]:
    """Server-side apply ESO's CRDs; their names, once Established and served. ESO exits at
    start-up when they are not served yet (its ExternalSecret controller indexes a field of
    the kind), so this comes before `ESOProcess`."""
    crds = load_crds(crds_dir or eso_crds_dir())
    return await kube.apply_crds(crds, served=eso_path("default", "externalsecrets"))


def secret_store(namespace: str) -> dict[str, Any]:
    """The namespace's SecretStore: the fake provider, holding `FAKE_KEY`."""
    return {
        "apiVersion": f"{ESO_GROUP}/{ESO_VERSION}",
        "kind": "SecretStore",
        "metadata": {"name": STORE_NAME, "namespace": namespace},
        "spec": {"provider": {"fake": {"data": [{"key": FAKE_KEY, "value": "v"}]}}},
    }


def external_secret(namespace: str, index: int, refresh: str) -> dict[str, Any]:
    """ExternalSecret `eso-peer-<index>`: `FAKE_KEY` into the Secret of the same name (one
    target per ExternalSecret), refreshed every `refresh` (a Go duration: 60s, 1m, 1h)."""
    name = f"eso-peer-{index}"
    return {
        "apiVersion": f"{ESO_GROUP}/{ESO_VERSION}",
        "kind": "ExternalSecret",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "refreshInterval": refresh,
            "secretStoreRef": {"name": STORE_NAME, "kind": "SecretStore"},
            "target": {"name": name, "creationPolicy": "Owner"},
            "data": [{"secretKey": "value", "remoteRef": {"key": FAKE_KEY}}],
        },
    }


async def create_peer_objects(
    kube: AdminKube, namespaces: list[str], per_namespace: int, refresh: str
) -> None:
    """In each existing namespace a fake SecretStore and `per_namespace` ExternalSecrets; the
    stores first, so no ExternalSecret waits on one. ESO's CRDs are served already."""
    await asyncio.gather(
        *(
            kube.request("POST", eso_path(namespace, "secretstores"), secret_store(namespace))
            for namespace in namespaces
        )
    )
    await asyncio.gather(
        *(
            kube.request(
                "POST",
                eso_path(namespace, "externalsecrets"),
                external_secret(namespace, index, refresh),
            )
            for namespace in namespaces
            for index in range(per_namespace)
        )
    )
