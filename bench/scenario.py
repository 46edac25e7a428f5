"""One benchmark stage for one size N, on a control plane of its own:

1. the operator (`egp-operator run`) mirrors N models from a new EGPSource, then runs steady
   cycles, then a churn of a fraction of the models; its requests, CPU and memory are sampled
   at cycle boundaries (the log line "cycle of EGPSource ns/name" ends each cycle);
2. with the operator stopped, the plain concurrent client makes the same writes in a fresh
   namespace, and the naive script refreshes every status one request after the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bench import baselines
from bench.baselines import Timed
from bench.kubeapi import (
    PLAIN_LIBRARIES,
    AdminKube,
    AllHavePhase,
    ModelTracker,
    PhasesAre,
    Requester,
    plain_client,
)
from bench.procs import BenchError, FakeEGPProcess, OperatorProcess, cpu_seconds
from egp_operator.egp.models import InferenceModel
from egp_operator.resources.models import GROUP, SOURCE_PLURAL, VERSION
from egp_operator.sync.mirrored import MirroredModel, StoredStatus
from egp_operator.sync.model_status import phase_of
from egp_operator.sync.naming import object_name
from egp_operator.sync.planner import Plan
from egp_testbench.cluster import LocalControlPlane

API_KEY: Final = "sk-bench-3f9a1c7e"
SOURCE: Final = "src"
OPERATOR_NS: Final = "mirror"
PLAIN_NS: Final = "plain"
WRITE_VERBS: Final = ("POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True)
class StageConfig:
    size: int
    page_size: int
    concurrency: int
    steady_cycles: int
    churn_fraction: float
    churn_rounds: int
    seed: int
    crds: tuple[dict[str, Any], ...]
    bin_dir: Path
    work_dir: Path

    @property
    def churn(self) -> int:
        return max(1, round(self.size * self.churn_fraction))

    @property
    def account(self) -> str:
        return f"acct-bench-{self.size}"


@dataclass(frozen=True)
class Sample:
    """The operator's counters at one instant (taken right after a cycle's log line)."""

    at: float
    cpu: float
    plane_cpu: float
    kube: Counter[str]
    sync_seconds: float
    sync_cycles: float
    egp: Counter[str]


@dataclass(frozen=True)
class CycleStats:
    """What happened between two samples: one cycle (and the wait before it)."""

    egp_list_requests: int
    kube_reads: int
    kube_writes: int
    kube_by_verb: dict[str, int]
    cpu_seconds: float
    plane_cpu_seconds: float
    cycle_seconds: float
    cycles: int
    elapsed: float
    log: str = ""

    @staticmethod
    def between(before: Sample, after: Sample, log: str = "") -> CycleStats:
        verbs = after.kube - before.kube
        cycles = round(after.sync_cycles - before.sync_cycles)
        return CycleStats(
            egp_list_requests=after.egp["list"] - before.egp["list"],
            kube_reads=verbs["GET"],
            kube_writes=sum(verbs[v] for v in WRITE_VERBS),
            kube_by_verb=dict(verbs),
            cpu_seconds=after.cpu - before.cpu,
            plane_cpu_seconds=after.plane_cpu - before.plane_cpu,
            cycle_seconds=(after.sync_seconds - before.sync_seconds) / max(cycles, 1),
            cycles=cycles,
            elapsed=after.at - before.at,
            log=log,
        )


@dataclass(frozen=True)
class PlainRun:
    """The plain client on one HTTP library: the mirror, then the churn both ways."""

    library: str
    initial: Timed
    initial_plane_cpu: float
    churn_same: list[Timed]
    churn_status: list[Timed]

    @property
    def churn_same_seconds(self) -> float:
        return statistics.median(t.seconds for t in self.churn_same)

    @property
    def churn_status_seconds(self) -> float:
        return statistics.median(t.seconds for t in self.churn_status)


@dataclass
class StageResult:
    size: int
    page_size: int
    concurrency: int
    churned: int
    idle_cpu_per_10s: float = 0.0
    initial_seconds: float = 0.0
    initial_cpu_seconds: float = 0.0
    initial_plane_cpu_seconds: float = 0.0
    initial_cycles: list[CycleStats] = field(default_factory=list)
    settle: CycleStats | None = None
    steady: list[CycleStats] = field(default_factory=list)
    churn_converge_seconds: list[float] = field(default_factory=list)
    churn_from_cycle_start_seconds: list[float] = field(default_factory=list)
    churn: list[CycleStats] = field(default_factory=list)
    after_churn: CycleStats | None = None
    rss_start: int = 0
    rss_mirrored: int = 0
    rss_end: int = 0
    peak_rss: int = 0
    plain: list[PlainRun] = field(default_factory=list)
    naive: Timed | None = None
    kubernetes_version: str = ""

    def plain_run(self, library: str) -> PlainRun:
        return next(run for run in self.plain if run.library == library)

    @property
    def steady_median(self) -> CycleStats | None:
        if not self.steady:
            return None
        ordered = sorted(self.steady, key=lambda c: c.cpu_seconds)
        return ordered[len(ordered) // 2]

    @property
    def churn_seconds(self) -> float:
        """The churn cycles' wall time, median over the rounds."""
        return statistics.median(c.cycle_seconds for c in self.churn) if self.churn else 0.0

    @property
    def steady_cpu(self) -> float:
        return statistics.median(c.cpu_seconds for c in self.steady) if self.steady else 0.0


@contextlib.contextmanager
def control_plane(config: StageConfig) -> Iterator[LocalControlPlane]:
    with LocalControlPlane(config.bin_dir, config.work_dir / f"cluster-{config.size}") as plane:
        yield plane


def _plane_cpu(plane: LocalControlPlane) -> float:
    total = 0.0
    for pid in plane.pids.values():
        with contextlib.suppress(OSError):
            total += cpu_seconds(pid)
    return total


async def _poll(
    check: Any, *, within: float, what: str, operator: OperatorProcess | None = None
) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result:
            return result
        if operator is not None and not operator.alive():
            raise BenchError(f"the operator exited while waiting for {what}")
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {within:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


class Stage:
    def __init__(
        self, config: StageConfig, plane: LocalControlPlane, kube: AdminKube, egp: FakeEGPProcess
    ) -> None:
        self.config = config
        self.plane = plane
        self.kube = kube
        self.egp = egp
        self.result = StageResult(config.size, config.page_size, config.concurrency, config.churn)
        self.churned: list[str] = []
        # A generous bound for anything that scales with N (a cycle, a mirror).
        self.patience = 120.0 + config.size * 0.06

    def log(self, message: str) -> None:
        print(f"[N={self.config.size}] {message}", flush=True)

    # ---- the operator ----------------------------------------------------------------------

    def sample(self, operator: OperatorProcess) -> Sample:
        scraped = operator.scrape()
        return Sample(
            at=time.monotonic(),
            cpu=operator.cpu_seconds(),
            plane_cpu=_plane_cpu(self.plane),
            kube=scraped.kube_requests,
            sync_seconds=scraped.sync_seconds,
            sync_cycles=scraped.sync_cycles,
            egp=self.egp.request_counts(),
        )

    async def next_cycle(self, operator: OperatorProcess, seen: int) -> tuple[Sample, str, int]:
        """Wait for a cycle to end after the `seen` first ones; sample at once."""

        def ended() -> list[str] | None:
            lines = operator.cycle_lines(OPERATOR_NS, SOURCE)
            return lines if len(lines) > seen else None

        lines = await _poll(
            ended, within=self.patience, what=f"cycle {seen + 1}", operator=operator
        )
        sample = self.sample(operator)
        return sample, lines[-1].split("cycle of EGPSource", 1)[-1].strip(), len(lines)

    async def run_operator(self, operator: OperatorProcess, upstream: list[dict[str, Any]]) -> None:
        config, result = self.config, self.result
        ids = [model["id"] for model in upstream]
        self.churned = random.Random(config.seed).sample(ids, config.churn)
        operator.wait_ready()
        await asyncio.sleep(3)  # let kopf finish its start-up LISTs and watches
        idle_cpu = operator.cpu_seconds()
        await asyncio.sleep(10)
        result.idle_cpu_per_10s = operator.cpu_seconds() - idle_cpu
        result.rss_start = operator.memory()["VmRSS"]
        self.log(f"operator idle: {result.idle_cpu_per_10s:.3f} s CPU per 10 s")

        await self.kube.create_namespace(OPERATOR_NS)
        await self.kube.create_secret(OPERATOR_NS, "egp-credentials", {"apiKey": API_KEY})
        source = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "EGPSource",
            "metadata": {"name": SOURCE, "namespace": OPERATOR_NS},
            "spec": {
                "baseURL": self.egp.url,
                "accountID": config.account,
                "credentialsSecretRef": {"name": "egp-credentials"},
                "refreshInterval": "10s",
                "pageSize": config.page_size,
            },
        }
        sources = f"/apis/{GROUP}/{VERSION}/namespaces/{OPERATOR_NS}/{SOURCE_PLURAL}"
        async with ModelTracker(self.kube, OPERATOR_NS) as tracker:
            before = self.sample(operator)
            started = time.monotonic()
            await self.kube.request("POST", sources, source)
            done = await tracker.wait(AllHavePhase(config.size), within=self.patience)
            result.initial_seconds = done - started
            result.initial_cpu_seconds = operator.cpu_seconds() - before.cpu
            result.initial_plane_cpu_seconds = _plane_cpu(self.plane) - before.plane_cpu
            self.log(f"initial mirror in {result.initial_seconds:.1f} s")
            # Every cycle that took part in the mirror (one, unless a write failed).
            sample, line, seen = await self.next_cycle(operator, 0)
            result.initial_cycles.append(CycleStats.between(before, sample, line))
            self.log(f"first cycle: {line}")
            previous, line, seen = await self.next_cycle(operator, seen)
            result.settle = CycleStats.between(sample, previous, line)
            self.log(f"settling cycle: {line}")
            for _ in range(config.steady_cycles):
                current, line, seen = await self.next_cycle(operator, seen)
                stats = CycleStats.between(previous, current, line)
                result.steady.append(stats)
                self.log(
                    f"steady cycle: {stats.egp_list_requests} EGP requests,"
                    f" {stats.kube_by_verb or 'no'} Kubernetes requests,"
                    f" {stats.cpu_seconds:.2f} s CPU, {stats.cycle_seconds:.2f} s wall"
                )
                previous = current
            result.rss_mirrored = operator.memory()["VmRSS"]

            # Churn, right after a cycle ended so the next one sees all of it; each round
            # flips the same models again.
            for _ in range(config.churn_rounds):
                expected = self.churn_upstream(self.churned)
                flipped = time.monotonic()
                converged = await tracker.wait(PhasesAre(expected), within=self.patience)
                current, line, seen = await self.next_cycle(operator, seen)
                churn = CycleStats.between(previous, current, line)
                result.churn.append(churn)
                result.churn_converge_seconds.append(converged - flipped)
                started_at = current.at - churn.cycle_seconds
                result.churn_from_cycle_start_seconds.append(converged - started_at)
                self.log(f"churn cycle: {line}; converged {converged - flipped:.1f} s")
                previous = current
            after, line, seen = await self.next_cycle(operator, seen)
            result.after_churn = CycleStats.between(previous, after, line)
        memory = operator.memory()
        result.rss_end, result.peak_rss = memory["VmRSS"], memory["VmHWM"]

    def churn_upstream(self, ids: Sequence[str]) -> dict[str, str]:
        """Flip the models `ids` upstream (see `flipped`); the phase each of their EGPModels
        must reach."""
        wanted = set(ids)
        expected: dict[str, str] = {}
        by_change: dict[str, tuple[dict[str, Any], list[str]]] = {}
        for model in self.egp.models(self.config.account):
            if model["id"] not in wanted:
                continue
            change = flipped(model)
            key = repr(sorted(change.items()))
            by_change.setdefault(key, (change, []))[1].append(model["id"])
            name = object_name(OPERATOR_NS, SOURCE, model["id"], model["name"])
            expected[name] = phase_of(change["status"])
        for change, group in by_change.values():
            self.egp.update_models(self.config.account, change, group)
        return expected

    # ---- the baselines -----------------------------------------------------------------------

    async def run_baselines(
        self, before: list[InferenceModel], after: list[InferenceModel], kubeconfig: Path
    ) -> None:
        for library in PLAIN_LIBRARIES:
            self.result.plain.append(await self.run_plain(library, before, after))
        result = self.result
        result.naive = await asyncio.to_thread(
            baselines.naive_refresh,
            str(kubeconfig),
            self.egp.url,
            API_KEY,
            self.config.account,
            f"{PLAIN_NS}-{PLAIN_LIBRARIES[0]}",
            SOURCE,
            self.config.page_size,
        )
        self.log(f"naive refresh in {result.naive.seconds:.1f} s")

    async def run_plain(
        self, library: str, before: list[InferenceModel], after: list[InferenceModel]
    ) -> PlainRun:
        """The plain client on `library`, in a namespace of its own."""
        namespace = f"{PLAIN_NS}-{library}"
        await self.kube.create_namespace(namespace)
        # A real, suspended owner, so the bodies (ownerReferences) are the operator's own and
        # the garbage collector finds the owner.
        owner = await self.kube.request(
            "POST",
            f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{SOURCE_PLURAL}",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "EGPSource",
                "metadata": {"name": SOURCE, "namespace": namespace},
                "spec": {"credentialsSecretRef": {"name": "none"}, "suspend": True},
            },
        )
        # The operator's runs are watched by the bench's tracker; so are these, so that the API
        # server and the machine carry the same observer in both.
        async with ModelTracker(self.kube, namespace):
            return await self._plain_writes(library, namespace, owner, before, after)

    async def _plain_writes(
        self,
        library: str,
        namespace: str,
        owner: dict[str, Any],
        before: list[InferenceModel],
        after: list[InferenceModel],
    ) -> PlainRun:
        initial = baselines.initial_plan(before, namespace, SOURCE)
        plane_cpu = _plane_cpu(self.plane)
        async with _client(library, self.kube, self.config.concurrency) as plain:
            mirrored = await baselines.plain_mirror(
                plain, initial.creates, namespace, SOURCE, owner["metadata"]["uid"]
            )
        mirror_plane_cpu = _plane_cpu(self.plane) - plane_cpu
        # The churn the operator wrote, first with its very writes (labels, status, Event),
        # then back with status patches only: each run changes every object it touches.
        state = baselines.mirrored_after(initial.creates)
        forth = baselines.churn_plan(after, state, namespace, SOURCE)
        back = baselines.churn_plan(before, _applied(state, forth), namespace, SOURCE)
        same: list[Timed] = []
        status_only: list[Timed] = []
        for _ in range(self.config.churn_rounds):
            async with _client(library, self.kube, self.config.concurrency) as plain:
                same.append(await baselines.plain_churn_writes(plain, forth, namespace))
            async with _client(library, self.kube, self.config.concurrency) as plain:
                status_only.append(
                    await baselines.plain_status_patches(plain, back.updates, namespace)
                )
        run = PlainRun(library, mirrored, mirror_plane_cpu, same, status_only)
        self.log(
            f"plain client ({library}): mirror {mirrored.seconds:.1f} s; churn"
            f" {run.churn_same_seconds:.2f} s (the operator's writes),"
            f" {run.churn_status_seconds:.2f} s (status only)"
        )
        return run


@contextlib.asynccontextmanager
async def _client(library: str, admin: AdminKube, concurrency: int) -> AsyncIterator[Requester]:
    client = plain_client(library, admin, concurrency)
    try:
        yield client
    finally:
        await client.aclose()


def flipped(model: dict[str, Any]) -> dict[str, Any]:
    """The churn of one model: ready -> failed, anything else -> ready; a phase change."""
    if model.get("status") == "ready":
        return {"status": "failed", "status_reason": "Benchmark churn: OOMKilled"}
    return {"status": "ready", "status_reason": None}


def _applied(mirrored: Sequence[MirroredModel], plan: Plan) -> list[MirroredModel]:
    updates = {u.name: u for u in plan.updates}
    result = []
    for model in mirrored:
        update = updates.get(model.name)
        if update is None:
            result.append(model)
            continue
        status = model.status
        if update.recipe is not None:
            status = StoredStatus.of(update.status or {})
        elif update.status_changes is not None:
            changes = update.status_changes
            status = dataclasses.replace(
                status,
                phase=changes["phase"],
                missing_since=changes["missingSince"],
                conditions=tuple(changes["conditions"]),
            )
        result.append(
            MirroredModel(
                model.name,
                model.model_id,
                update.labels if update.labels is not None else model.labels,
                status,
            )
        )
    return result


async def run_stage(config: StageConfig, egp: FakeEGPProcess) -> StageResult:
    """Everything for one N; whatever it started is stopped, even on failure."""
    egp.add_account(API_KEY, config.account, config.size, config.seed)
    upstream = egp.models(config.account)
    with contextlib.ExitStack() as stack:
        plane = stack.enter_context(control_plane(config))
        kube = AdminKube(plane.server, plane.ca_file, plane.admin_token)
        try:
            await kube.prepare_for_operator(config.crds)
            stage = Stage(config, plane, kube, egp)
            stage.result.kubernetes_version = await kube.server_version()
            operator = OperatorProcess(
                plane.kubeconfig,
                config.work_dir / f"operator-{config.size}.log",
                status_heartbeat_seconds="3600",
                kube_concurrency=str(config.concurrency),
            )
            try:
                await stage.run_operator(operator, upstream)
            finally:
                operator.stop()
            churned = set(stage.churned)
            after = [{**m, **flipped(m)} if m["id"] in churned else m for m in upstream]
            await stage.run_baselines(
                baselines.parse(upstream), baselines.parse(after), plane.kubeconfig
            )
            return stage.result
        finally:
            await kube.aclose()
