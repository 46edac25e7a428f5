"""`python -m bench.many_sources`: many EGPSources with a few models each, as platform teams run
them (one source per team namespace), and what the operator's memory and CPU do over time.

    .venv/bin/python -m bench.many_sources --sources 200 --models 1 --minutes 3 --json /tmp/m.json

One local control plane and one local EGP server (one account per source, `--models` models
each); the operator runs as in production (`egp-operator run`, cluster-wide), every source
with `refreshInterval` `--interval`. From the creation of the sources until `--minutes` after
the end of their first mirror, the operator's RSS, CPU time, sync cycles and requests are
sampled every `--sample-every` seconds; the report
gives the RSS slope (least squares, MB per hour, over the samples after the first mirror), the
CPU as a share of a core, and per source and cycle: CPU ms, Kubernetes and EGP requests.
`--plot FILE.png` draws the RSS series. It measures, it does not assert.

`--restart` then restarts the operator, as a rollout does, and counts the sources' cycles
every second until each has had one: how the first cycles of a restart spread their load
(`scheduling.first_cycle_delay`). `--sources 100,1000,3000` runs each count in turn, each on a
fresh control plane; `--record-scale` records such a run as the scale table of RESULTS.md.
`--sources 1 --models 1000,10000,50000 --record-growth` records one source as its models grow:
the first mirror, the steady cycle and the memory (the growth table).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.kubeapi import AdminKube, load_crds
from bench.many_sources_report import (
    MANY_SOURCES_GROWTH_JSON,
    MANY_SOURCES_JSON,
    MANY_SOURCES_SCALE_JSON,
    with_many_sources,
)
from bench.peer_eso import ESOProcess, apply_eso_crds, create_peer_objects
from bench.procs import FakeEGPProcess, OperatorProcess
from egp_operator.resources.models import GROUP, SOURCE_PLURAL, VERSION, parse_duration
from egp_testbench.cluster import LocalControlPlane, find_bin_dir

REPO = Path(__file__).resolve().parents[1]
API_KEY = "sk-bench-many-sources"
MB = 1024 * 1024
#: The verbs of egp_operator_kubernetes_requests_total that are the Secret watches' own.
WATCH_UPKEEP = ("LIST", "WATCH")


@dataclass
class Sample:
    seconds: float  # since every source was created
    rss_mb: float
    cpu_seconds: float
    cycles: float
    #: The cycles' own requests (GET, POST, PATCH, DELETE): a settled cycle should make none.
    kube_requests: int
    #: The Secret watches' upkeep (LIST, WATCH): a start, a restart every 5-10 minutes.
    watch_requests: int
    egp_requests: int
    scrape_bytes: int = 0
    scrape_seconds: float = 0.0


@dataclass
class PeerSample:
    seconds: float
    rss_mb: float
    cpu_seconds: float


@dataclass
class Run:
    command: str
    sources: int
    models_per_source: int
    interval: str
    #: The sources are spread over this many namespaces, one credentials Secret in each.
    namespaces: int = 0
    idle_rss_mb: float = 0.0
    mirrored_after_seconds: float = 0.0
    peak_rss_mb: float = 0.0  # VmHWM at the end
    samples: list[Sample] = field(default_factory=list)
    #: With `--peer eso`: External Secrets Operator in the same run, on the same control
    #: plane, with as many ExternalSecrets in the same namespaces and the same interval.
    peer: str = ""
    peer_samples: list[PeerSample] = field(default_factory=list)
    #: After a restart of the operator: (seconds since it was ready, cycles since then).
    restart: list[tuple[float, float]] = field(default_factory=list)

    def restart_summary(self) -> dict[str, float]:
        """How the first cycles after a restart spread: when every source had had one, and
        the busiest 5 seconds against the steady rate (sources per interval)."""
        if not self.restart:
            return {}
        done = next((t for t, cycles in self.restart if cycles >= self.sources), float("nan"))
        rates = []
        for index, (start, cycles) in enumerate(self.restart):
            end = next(((t, c) for t, c in self.restart[index:] if t - start >= 5), None)
            if end is not None:
                rates.append((end[1] - cycles) / (end[0] - start))
        peak = max(rates, default=float("nan"))
        return {
            "restart: seconds until every source cycled": done,
            "restart: busiest 5 s, cycles per second": peak,
            "steady cycles per second": self.sources
            / parse_duration(self.interval).total_seconds(),
        }

    def steady(self) -> list[Sample]:
        """The samples after every source's first mirror."""
        return [s for s in self.samples if s.seconds >= self.mirrored_after_seconds]

    def rss_slope_mb_per_hour(self) -> float:
        steady = self.steady()
        if len(steady) < 2:
            return float("nan")
        slope = statistics.linear_regression(
            [s.seconds for s in steady], [s.rss_mb for s in steady]
        ).slope
        return slope * 3600

    def peer_summary(self) -> dict[str, float]:
        """The peer over the same window as the operator's steady samples, and the ratios."""
        window = [s for s in self.peer_samples if s.seconds >= self.mirrored_after_seconds]
        if len(window) < 2:
            return {}
        first, last = window[0], window[-1]
        elapsed = last.seconds - first.seconds
        slope = statistics.linear_regression(
            [s.seconds for s in window], [s.rss_mb for s in window]
        ).slope
        ours = self.summary()
        cpu = (last.cpu_seconds - first.cpu_seconds) / elapsed
        return {
            "peer rss start MB": first.rss_mb,
            "peer rss end MB": last.rss_mb,
            "peer rss slope MB/h": slope * 3600,
            "peer cpu share of a core": cpu,
            "rss ratio to the peer": ours["rss end MB"] / last.rss_mb,
            "cpu ratio to the peer": ours["cpu share of a core"] / cpu,
        }

    def summary(self) -> dict[str, float]:
        steady = self.steady()
        first, last = steady[0], steady[-1]
        elapsed = last.seconds - first.seconds
        cycles = max(last.cycles - first.cycles, 1.0)
        cpu = last.cpu_seconds - first.cpu_seconds
        return {
            "rss start MB": first.rss_mb,
            "rss end MB": last.rss_mb,
            "rss slope MB/h": self.rss_slope_mb_per_hour(),
            "rss per source KB": (last.rss_mb - self.idle_rss_mb) * 1024 / self.sources,
            "cpu share of a core": cpu / elapsed if elapsed else float("nan"),
            "cpu ms per source cycle": cpu * 1000 / cycles,
            "kubernetes requests per source cycle": (last.kube_requests - first.kube_requests)
            / cycles,
            "secret watch requests per minute": (last.watch_requests - first.watch_requests)
            * 60
            / (elapsed or float("nan")),
            "egp requests per source cycle": (last.egp_requests - first.egp_requests) / cycles,
            "scrape KB": statistics.fmean(s.scrape_bytes for s in steady) / 1024,
            "scrape ms": statistics.fmean(s.scrape_seconds for s in steady) * 1000,
        }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.many_sources", description=__doc__)
    parser.add_argument(
        "--sources", default="200", help="how many sources; a comma-separated list runs each"
    )
    parser.add_argument(
        "--models", default="1", help="models per source; a comma-separated list runs each"
    )
    parser.add_argument("--interval", default="60s", help="every source's refreshInterval")
    parser.add_argument(
        "--namespaces",
        type=int,
        default=0,
        help="spread the sources over this many namespaces, one credentials Secret each"
        " (0: a namespace per source)",
    )
    parser.add_argument(
        "--minutes", type=float, default=3.0, help="sampled this long after the first mirror"
    )
    parser.add_argument(
        "--mirror-patience",
        type=float,
        default=30.0,
        help="minutes the first mirror may take before the run gives up",
    )
    parser.add_argument("--sample-every", type=float, default=15.0, help="seconds")
    parser.add_argument(
        "--peer",
        choices=["eso"],
        default=None,
        help="run External Secrets Operator beside it, with an ExternalSecret per source in"
        " the same namespaces (tools/eso/build.sh), and report both",
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None, help="a PNG of the RSS series")
    parser.add_argument("--keep", action="store_true", help="keep the logs")
    parser.add_argument(
        "--record",
        action="store_true",
        help="record the run: bench/many_sources.json and .png, and its section of RESULTS.md",
    )
    parser.add_argument(
        "--restart", action="store_true", help="then restart the operator and time its first cycles"
    )
    parser.add_argument(
        "--record-growth",
        action="store_true",
        help="record the runs (one per --models count) as the growth table of RESULTS.md",
    )
    parser.add_argument(
        "--record-scale",
        action="store_true",
        help="record the runs (one per --sources count) as the scale table of RESULTS.md",
    )
    return parser


def _settings(run: Run) -> dict[str, str]:
    """The operator's settings: as deployed, but with room for the listing of a large source
    (the defaults refuse more than 20,000 models or 32 MiB of pages)."""
    settings = {"status_heartbeat_seconds": "3600"}
    if run.models_per_source > 20_000:
        settings["max_models_per_source"] = str(2 * run.models_per_source)
        settings["max_listing_bytes"] = str(run.models_per_source * 4096)
    return settings


def namespaces_of(run: Run) -> list[str]:
    return [f"team-{index}" for index in range(run.namespaces or run.sources)]


async def _create_sources(kube: AdminKube, egp_url: str, run: Run) -> None:
    """Source `i` is `src-<i // namespaces>` in namespace `team-<i % namespaces>`, and every
    source of a namespace uses its one Secret, as a team with several accounts would."""
    namespaces = namespaces_of(run)

    async def namespace_of_its_own(namespace: str) -> None:
        await kube.create_namespace(namespace)
        await kube.create_secret(namespace, "egp-credentials", {"apiKey": API_KEY})

    await asyncio.gather(*(namespace_of_its_own(namespace) for namespace in namespaces))

    async def one(index: int) -> None:
        namespace = namespaces[index % len(namespaces)]
        name = "src" if len(namespaces) == run.sources else f"src-{index // len(namespaces)}"
        await kube.request(
            "POST",
            f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{SOURCE_PLURAL}",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "EGPSource",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "baseURL": egp_url,
                    "accountID": f"acct-{index}",
                    "credentialsSecretRef": {"name": "egp-credentials"},
                    "refreshInterval": run.interval,
                },
            },
        )

    await asyncio.gather(*(one(index) for index in range(run.sources)))


def _sample(operator: OperatorProcess, egp: FakeEGPProcess, since: float) -> Sample:
    metrics = operator.scrape()
    return Sample(
        seconds=time.monotonic() - since,
        rss_mb=operator.memory()["VmRSS"] / MB,
        cpu_seconds=operator.cpu_seconds(),
        cycles=metrics.sync_cycles,
        kube_requests=sum(
            n for verb, n in metrics.kube_requests.items() if verb not in WATCH_UPKEEP
        ),
        watch_requests=sum(metrics.kube_requests[verb] for verb in WATCH_UPKEEP),
        scrape_bytes=metrics.scrape_bytes,
        scrape_seconds=metrics.scrape_seconds,
        # The server counts each request twice: by endpoint, and by endpoint and status.
        egp_requests=sum(n for key, n in egp.request_counts().items() if " " not in key),
    )


async def measure(run: Run, args: argparse.Namespace, work: Path) -> None:
    egp = FakeEGPProcess(work / "fake-egp.log", api_key=API_KEY, account_id="acct-0")
    try:
        for index in range(run.sources):
            egp.add_account(API_KEY, f"acct-{index}", run.models_per_source, seed=index)
        with LocalControlPlane(find_bin_dir(build=True), work / "cluster") as plane:
            kube = AdminKube(plane.server, plane.ca_file, plane.admin_token)
            try:
                await kube.prepare_for_operator(load_crds(REPO / "crds"))
                operator = OperatorProcess(
                    plane.kubeconfig, work / "operator.log", **_settings(run)
                )
                peer = None
                if args.peer:
                    await apply_eso_crds(kube)
                    peer = ESOProcess(plane.kubeconfig, work / "eso.log")
                try:
                    await _observe(run, args, kube, egp, operator, peer)
                    if args.restart:
                        operator.stop()
                        operator = OperatorProcess(
                            plane.kubeconfig, work / "operator-restarted.log", **_settings(run)
                        )
                        await _first_cycles(run, operator)
                finally:
                    run.peak_rss_mb = operator.memory()["VmHWM"] / MB
                    operator.stop()
                    if peer is not None:
                        peer.stop()
            finally:
                await kube.aclose()
    finally:
        egp.stop()


async def _observe(
    run: Run,
    args: argparse.Namespace,
    kube: AdminKube,
    egp: FakeEGPProcess,
    operator: OperatorProcess,
    peer: ESOProcess | None,
) -> None:
    operator.wait_ready()
    await asyncio.sleep(3)  # kopf's start-up LISTs and watches
    run.idle_rss_mb = operator.memory()["VmRSS"] / MB
    await _create_sources(kube, egp.url, run)
    if peer is not None:
        await create_peer_objects(
            kube,
            namespaces_of(run),
            per_namespace=run.sources // len(namespaces_of(run)),
            refresh=run.interval,
        )
    since = time.monotonic()
    # `--minutes` from the end of every source's first mirror, which a large source needs
    # minutes for; a mirror that never ends stops the run after `--mirror-patience`.
    deadline = since + args.mirror_patience * 60
    while time.monotonic() < deadline:
        sample = _sample(operator, egp, since)
        run.samples.append(sample)
        if peer is not None:
            run.peer_samples.append(
                PeerSample(sample.seconds, peer.memory()["VmRSS"] / MB, peer.cpu_seconds())
            )
        if not run.mirrored_after_seconds and sample.cycles >= run.sources:
            run.mirrored_after_seconds = sample.seconds
            deadline = time.monotonic() + args.minutes * 60
        print(
            f"many_sources: {sample.seconds:6.0f} s  RSS {sample.rss_mb:6.1f} MB"
            f"  CPU {sample.cpu_seconds:7.1f} s  cycles {sample.cycles:.0f}",
            flush=True,
        )
        await asyncio.sleep(args.sample_every)


async def _first_cycles(run: Run, operator: OperatorProcess, patience: float = 180) -> None:
    """Cycles counted every second from the restarted operator's readiness until every source
    has had one (or for `patience` seconds)."""
    operator.wait_ready()
    ready = time.monotonic()
    while time.monotonic() - ready < patience:
        cycles = operator.scrape().sync_cycles
        run.restart.append((time.monotonic() - ready, cycles))
        if cycles >= run.sources:
            break
        await asyncio.sleep(1)
    summary = run.restart_summary()
    print(
        "many_sources: restart: every source cycled after"
        f" {summary['restart: seconds until every source cycled']:.0f} s",
        flush=True,
    )


def plot(runs: Sequence[Run], labels: Sequence[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4))
    for run, label in zip(runs, labels, strict=True):
        minutes = [s.seconds / 60 for s in run.samples]
        axes.plot(minutes, [s.rss_mb for s in run.samples], label=label)
    axes.set_xlabel("minutes since every source was created")
    axes.set_ylabel("operator RSS (MB)")
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def _one(sources: int, models: int, args: argparse.Namespace, command: str) -> Run:
    run = Run(
        command, sources, models, args.interval, namespaces=args.namespaces, peer=args.peer or ""
    )
    work = Path(tempfile.mkdtemp(prefix="egp-many-"))
    try:
        asyncio.run(measure(run, args, work))
    finally:
        if args.keep:
            print(f"many_sources: logs kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    for name, value in {**run.summary(), **run.peer_summary(), **run.restart_summary()}.items():
        print(f"many_sources: {sources} x {models}: {name}: {value:.2f}")
    return run


def _raw(run: Run) -> dict[str, Any]:
    return {
        **asdict(run),
        "summary": run.summary(),
        "peer_summary": run.peer_summary(),
        "restart_summary": run.restart_summary(),
    }


def _record_runs(path: Path, raws: list[dict[str, Any]], key: str) -> None:
    """Keep the recorded runs of `path` in order of `key`, these replacing any of the same
    count: a table can be completed one count at a time."""
    kept = json.loads(path.read_text()) if path.is_file() else []
    by_count = {raw[key]: raw for raw in [*kept, *raws]}
    path.write_text(json.dumps([by_count[count] for count in sorted(by_count)], indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = " ".join([".venv/bin/python -m bench.many_sources", *(argv or sys.argv[1:])])
    runs = []
    for sources in args.sources.split(","):
        for models in args.models.split(","):
            runs.append(_one(int(sources), int(models), args, command))
            for wanted, path, key in (  # each as it ends: a later one may fail
                (args.record_scale, MANY_SOURCES_SCALE_JSON, "sources"),
                (args.record_growth, MANY_SOURCES_GROWTH_JSON, "models_per_source"),
            ):
                if wanted:
                    _record_runs(path, [_raw(runs[-1])], key)
    if args.json is not None:
        raws = [_raw(run) for run in runs]
        args.json.write_text(json.dumps(raws[0] if len(raws) == 1 else raws, indent=2) + "\n")
    labels = [f"{run.sources} sources x {run.models_per_source}" for run in runs]
    if args.plot is not None:
        plot(runs, labels, args.plot)
    if args.record:
        MANY_SOURCES_JSON.write_text(json.dumps(_raw(runs[-1]), indent=2) + "\n")
        plot(runs[-1:], labels[-1:], MANY_SOURCES_JSON.with_suffix(".png"))
    if args.record or args.record_scale or args.record_growth:
        results = REPO / "bench" / "RESULTS.md"
        results.write_text(with_many_sources(results.read_text()))
        print(f"many_sources: recorded in {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
