"""`egp-operator run` as a child process on loopback, for e2e tests and benchmarks.

It runs as in production, against the cluster of `kubeconfig`, with free probe and metrics ports
and settings passed the way a Deployment passes them (`EGP_OPERATOR_*` variables). Its output
goes to a file, and it gets a process group of its own, so stopping it stops all of it. Its
/metrics asks for a bearer token the API server allows to read it: `metrics_headers` carries
the one the operator logs in with (the tests and benchmarks run it as the cluster's admin).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import yaml

from egp_testbench.processes import free_port, stop_group

OPERATOR_COMMAND: Final = (sys.executable, "-m", "egp_operator.cli", "run")
STOP_TIMEOUT: Final = 30.0


class OperatorProcess:
    """One replica of the operator; its log is kept in `log_file`."""

    def __init__(
        self,
        kubeconfig: Path,
        log_file: Path,
        *,
        command: Sequence[str] = OPERATOR_COMMAND,
        **settings: str,
    ) -> None:
        """`command` must exec the operator itself, not a wrapper, so that `pid` is its pid."""
        self.log_file = log_file
        self.kubeconfig = kubeconfig
        self.metrics_port = free_port()
        settings = {
            "probe_host": "127.0.0.1",
            "liveness_port": str(free_port()),
            "metrics_port": str(self.metrics_port),
            **settings,
        }
        env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        env.update({f"EGP_OPERATOR_{key.upper()}": value for key, value in settings.items()})
        self._log = log_file.open("wb")
        self.process = subprocess.Popen(  # noqa: S603 - our own command line
            list(command),
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.process.pid

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def metrics_headers(self) -> dict[str, str]:
        """What a scrape sends: the bearer token of the kubeconfig the operator runs with."""
        token = kubeconfig_token(self.kubeconfig)
        return {"Authorization": f"Bearer {token}"} if token else {}

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Send `sig` to the whole group; SIGKILL what is still there after `STOP_TIMEOUT`."""
        stop_group(self.pid, timeout=STOP_TIMEOUT, running=self.alive, sig=sig)
        self._log.close()


def kubeconfig_token(path: Path) -> str | None:
    """The bearer token of a kubeconfig's current user, if it logs in with one."""
    config = yaml.safe_load(path.read_text())
    context = next(
        c["context"] for c in config["contexts"] if c["name"] == config["current-context"]
    )
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
    token = user.get("token")
    return str(token) if token else None
