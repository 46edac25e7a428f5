"""The operator's image, run by podman under runc as a Deployment's pod would be run.

`tools/image/build.sh` builds the image from the Dockerfile (`make image`; `make test` does it
first). A `PodContainer` turns a Deployment's pod template into podman's flags: its container's
security context (user, read-only root, capabilities, no privilege escalation, the runtime's
default seccomp profile), its resources, its `/tmp` emptyDir, its environment with the downward
API filled in, and the ServiceAccount's projected token, CA and namespace where the in-cluster
configuration looks for them, with `KUBERNETES_SERVICE_HOST` and `_PORT` as the kubelet sets
them. It shares the host's network, where the control plane and the local EGP server listen on
loopback only.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.e2e.harness import checked_tool

#: The image's user (Dockerfile: USER 65532:65532).
IMAGE_USER = 65532
#: Where the in-cluster configuration reads the ServiceAccount's token, CA and namespace.
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def image_name() -> str:
    """The image `make image` built (`EGP_OPERATOR_IMAGE`, or the build script's default);
    missing, the tests that need it fail rather than skip."""
    named = os.environ.get("EGP_OPERATOR_IMAGE") or checked_tool("image/build.sh")
    if not named:
        pytest.fail("the operator's image is not built: `make image` (make test does it)")
    return named


def uids_of(proc_status: str) -> set[str]:
    """The real, effective, saved and file-system user ids a `/proc/<pid>/status` gives."""
    line = next(line for line in proc_status.splitlines() if line.startswith("Uid:"))
    return set(line.split()[1:])


def podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, check=False, timeout=timeout
    )


def rlimits() -> list[str]:
    """Open files at this machine's hard limit, and 4,096 processes: podman's defaults ask for
    more than a runtime without CAP_SYS_RESOURCE may grant, and runc then refuses to start the
    container ("error setting rlimits"). The operator needs far fewer of either."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    files = 1 << 20 if hard == resource.RLIM_INFINITY else min(hard, 1 << 20)
    return [f"--ulimit=nofile={files}:{files}", "--ulimit=nproc=4096:4096"]


def run_in_image(image: str, *command: str, entrypoint: str) -> subprocess.CompletedProcess[str]:
    """A one-off command in the image, as its own user."""
    return podman(
        "run", "--rm", *rlimits(), "--network=none", f"--entrypoint={entrypoint}", image, *command
    )


@dataclass
class ServiceAccountFiles:
    """What the kubelet projects into a pod for its ServiceAccount."""

    directory: Path
    server: str  # https://host:port of the API server, for KUBERNETES_SERVICE_HOST and _PORT

    @classmethod
    def write(
        cls, directory: Path, *, token: str, ca: bytes, namespace: str, server: str
    ) -> ServiceAccountFiles:
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o755)
        for name, content in (
            ("token", token.encode()),
            ("ca.crt", ca),
            ("namespace", namespace.encode()),
        ):
            path = directory / name
            path.write_bytes(content)
            path.chmod(0o644)  # the projected volume's default mode
        return cls(directory, server)


class PodContainer:
    """One pod of `deployment`, as the container `name` under podman."""

    def __init__(
        self,
        image: str,
        deployment: dict[str, Any],
        *,
        pod_name: str,
        service_account: ServiceAccountFiles,
        env: dict[str, str] | None = None,
    ) -> None:
        self.image = image
        self.pod = deployment["spec"]["template"]["spec"]
        self.namespace = deployment["metadata"]["namespace"]
        self.pod_name = pod_name
        self.name = f"egp-test-{pod_name}-{uuid.uuid4().hex[:6]}"
        self.service_account = service_account
        self.extra_env = env or {}

    @property
    def container(self) -> dict[str, Any]:
        return self.pod["containers"][0]  # type: ignore[no-any-return]

    @property
    def grace_seconds(self) -> int:
        return int(self.pod.get("terminationGracePeriodSeconds", 30))

    def environment(self) -> dict[str, str]:
        """The container's env, with the downward API's fields filled in, then the kubelet's
        service variables, then the test's own."""
        fields = {"metadata.name": self.pod_name, "metadata.namespace": self.namespace}
        found: dict[str, str] = {}
        for variable in self.container.get("env", []):
            if "value" in variable:
                found[variable["name"]] = variable["value"]
            else:
                found[variable["name"]] = fields[variable["valueFrom"]["fieldRef"]["fieldPath"]]
        server = urlsplit(self.service_account.server)
        found["KUBERNETES_SERVICE_HOST"] = str(server.hostname)
        found["KUBERNETES_SERVICE_PORT"] = str(server.port)
        return found | self.extra_env

    def security_flags(self) -> list[str]:
        """The pod's and container's security context as podman's flags; a field this does not
        translate fails the test, so the manifest cannot grow one the test silently ignores."""
        context = self.pod.get("securityContext", {}) | self.container.get("securityContext", {})
        flags = []
        for field, value in context.items():
            if field == "runAsUser":
                flags.append(f"--user={value}:{context.get('runAsGroup', value)}")
            elif field == "readOnlyRootFilesystem" and value:
                flags += ["--read-only", "--read-only-tmpfs=false"]
            elif field == "allowPrivilegeEscalation" and not value:
                flags.append("--security-opt=no-new-privileges")
            elif field == "capabilities":
                assert value == {"drop": ["ALL"]}, value
                flags.append("--cap-drop=all")
            elif field == "seccompProfile":
                assert value == {"type": "RuntimeDefault"}, value  # podman's default profile
            elif field in ("runAsGroup", "runAsNonRoot"):
                continue  # with runAsUser; runAsNonRoot is checked against the image's user
            else:
                pytest.fail(f"the test does not translate securityContext.{field}")
        return flags

    def volume_flags(self) -> list[str]:
        """Each emptyDir as a tmpfs of its size limit, owned by nobody in particular and
        writable by all (an emptyDir's mode), and the ServiceAccount's files, read-only."""
        volumes = {volume["name"]: volume for volume in self.pod.get("volumes", [])}
        flags = []
        for mount in self.container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            assert "emptyDir" in volume, volume
            size = (volume["emptyDir"] or {}).get("sizeLimit", "64Mi").removesuffix("i").lower()
            flags.append(
                f"--mount=type=tmpfs,destination={mount['mountPath']},tmpfs-size={size},tmpfs-mode=1777"
            )
        flags.append(f"--volume={self.service_account.directory}:{SERVICE_ACCOUNT_DIR}:ro")
        return flags

    def resource_flags(self) -> list[str]:
        limits = self.container.get("resources", {}).get("limits", {})
        flags = []
        if "memory" in limits:
            flags.append(f"--memory={limits['memory'].removesuffix('i').lower()}")
        if "cpu" in limits:
            flags.append(f"--cpus={limits['cpu']}")
        return flags

    def start(self) -> None:
        env = [f"--env={name}={value}" for name, value in self.environment().items()]
        started = podman(
            "run",
            "--detach",
            f"--name={self.name}",
            "--network=host",
            "--pull=never",
            *rlimits(),
            *self.security_flags(),
            *self.volume_flags(),
            *self.resource_flags(),
            *env,
            self.image,
            *self.container.get("args", []),
        )
        assert started.returncode == 0, started.stderr

    def logs(self) -> str:
        """What the container wrote, as `kubectl logs` shows it (stdout and stderr)."""
        found = podman("logs", self.name)
        return found.stdout + found.stderr

    def exec_result(self, *command: str) -> subprocess.CompletedProcess[str]:
        return podman("exec", self.name, *command)

    def exec(self, *command: str) -> str:
        done = self.exec_result(*command)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def inspect(self) -> dict[str, Any]:
        found = podman("inspect", self.name)
        assert found.returncode == 0, found.stderr
        return json.loads(found.stdout)[0]  # type: ignore[no-any-return]

    def stop(self) -> subprocess.CompletedProcess[str]:
        """SIGTERM, then SIGKILL after the pod's termination grace period, as the kubelet."""
        return podman(
            "stop", f"--time={self.grace_seconds}", self.name, timeout=self.grace_seconds + 60
        )

    def remove(self) -> None:
        podman("rm", "--force", "--time=0", self.name)
