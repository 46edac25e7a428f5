"""The processes a benchmark starts (local EGP server, operator) and what /proc says of them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
from prometheus_client.parser import text_string_to_metric_families

from egp_testbench import operator_process
from egp_testbench.processes import free_port, stop_group

_CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
_STOP_TIMEOUT: Final = 30.0


class BenchError(RuntimeError):
    """Something the benchmark needs did not happen in time."""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far, from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime (fields 14, 15)


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in bytes, from /proc/<pid>/status."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024
    return values


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def _wait_until(check: Any, *, timeout: float, what: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if process.poll() is not None:
            raise BenchError(f"{what}: the process exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


class FakeEGPProcess:
    """`fake-egp`, the local EGP server, in its own process (so it never shares the driver's
    GIL), with a client for its admin API."""

    def __init__(self, log_file: Path, *, api_key: str, account_id: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log_file.open("wb")
        command = [
            sys.executable,
            "-m",
            "egp_testbench.fake_egp",
            "--host=127.0.0.1",
            f"--port={self.port}",
            f"--api-key={api_key}",
            f"--account-id={account_id}",
            "--models=0",
        ]
        self.process = subprocess.Popen(  # noqa: S603
            command, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._admin = httpx.Client(base_url=f"{self.url}/_admin", timeout=60)
        try:
            _wait_until(
                self._healthy, timeout=30, what="the local EGP server", process=self.process
            )
        except BaseException:
            self.stop()
            raise

    def _healthy(self) -> bool:
        try:
            return self._admin.get("/health").status_code == 200
        except httpx.TransportError:
            return False

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        response = self._admin.request(method, path, json=body)
        response.raise_for_status()
        return response.json()

    def add_account(self, api_key: str, account_id: str, count: int, seed: int) -> None:
        self.admin("POST", "/keys", {"api_key": api_key, "account_id": account_id})
        self.admin("POST", f"/accounts/{account_id}/generate", {"count": count, "seed": seed})

    def models(self, account_id: str) -> list[dict[str, Any]]:
        models: list[dict[str, Any]] = self.admin("GET", f"/accounts/{account_id}/models")
        return models

    def update_models(self, account_id: str, changes: dict[str, Any], ids: list[str]) -> int:
        answer = self.admin(
            "PATCH", f"/accounts/{account_id}/models", {"changes": changes, "ids": ids}
        )
        return int(answer["changed"])

    def request_counts(self) -> Counter[str]:
        return Counter(self.admin("GET", "/requests")["counts"])

    def stop(self) -> None:
        self._admin.close()
        stop_group(
            self.process.pid, timeout=_STOP_TIMEOUT, running=lambda: self.process.poll() is None
        )
        self._log.close()


@contextlib.contextmanager
def one_model_egp(api_key: str, account_id: str) -> Iterator[str]:
    """The URL of a local EGP server holding one account of one model, for the benches that
    time one source's requests in one process."""
    with tempfile.TemporaryDirectory(prefix="one-model-egp-") as folder:
        server = FakeEGPProcess(
            Path(folder) / "fake-egp.log", api_key=api_key, account_id=account_id
        )
        try:
            server.add_account(api_key, account_id, count=1, seed=1)
            yield server.url
        finally:
            server.stop()


@dataclass(frozen=True)
class OperatorMetrics:
    """What one scrape of the operator's /metrics says, summed over sources."""

    kube_requests: Counter[str]
    sync_seconds: float
    sync_cycles: float
    #: The scrape itself: what a Prometheus pays (and makes the operator pay) each time.
    scrape_bytes: int = 0
    scrape_seconds: float = 0.0


class OperatorProcess(operator_process.OperatorProcess):
    """`egp-operator run` as in production (cluster-wide), plus what the benchmark reads of it:
    its log lines as they come, its CPU and memory from /proc, its /metrics."""

    def __init__(
        self,
        kubeconfig: Path,
        log_file: Path,
        *,
        command: Sequence[str] = operator_process.OPERATOR_COMMAND,
        **settings: str,
    ) -> None:
        super().__init__(kubeconfig, log_file, command=command, **settings)
        self._http = httpx.Client(timeout=30)
        self._offset = 0
        self._lines: list[str] = []

    def wait_ready(self, timeout: float = 90) -> None:
        """Until kopf has started and, with mandatory peering, resumed operations."""
        _wait_until(
            lambda: any("Resuming operations" in line for line in self.new_lines()),
            timeout=timeout,
            what="the operator to start",
            process=self.process,
        )

    def new_lines(self) -> list[str]:
        """Every complete log line so far (read incrementally: the log only grows)."""
        with self.log_file.open("rb") as log:
            log.seek(self._offset)
            chunk = log.read()
        end = chunk.rfind(b"\n") + 1
        self._offset += end
        self._lines += chunk[:end].decode(errors="replace").splitlines()
        return self._lines

    def cycle_lines(self, namespace: str, source: str) -> list[str]:
        marker = f"cycle of EGPSource {namespace}/{source}:"
        return [line for line in self.new_lines() if marker in line]

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def memory(self) -> dict[str, int]:
        return memory(self.pid)

    def scrape(self) -> OperatorMetrics:
        started = time.monotonic()
        answer = self._http.get(self.metrics_url, headers=self.metrics_headers)
        took = time.monotonic() - started
        text = answer.text
        kube: Counter[str] = Counter()
        sync_sum = sync_count = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "egp_operator_kubernetes_requests_total":
                    kube[sample.labels["verb"]] += int(sample.value)
                elif sample.name == "egp_operator_sync_duration_seconds_sum":
                    sync_sum += sample.value
                elif sample.name == "egp_operator_sync_duration_seconds_count":
                    sync_count += sample.value
        return OperatorMetrics(kube, sync_sum, sync_count, len(answer.content), took)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self._http.close()
        super().stop(sig)
