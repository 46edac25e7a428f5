"""bench/RESULTS.md, rendered from the measured stages."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bench.baselines import Timed
from bench.scenario import CycleStats, StageResult
from egp_operator.resources.models import parse_duration

MB = 1024 * 1024
#: Issue 14's targets: against the plain aiohttp client (the cheapest in Python) at every size,
#: and for the steady cycle and memory at the largest.
TARGET_INITIAL_RATIO = 1.1
TARGET_CHURN_RATIO = 1.25
TARGET_CPU = 0.3
TARGET_PEAK_RSS = 150 * MB
TARGET_LIBRARY = "aiohttp"


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return [*lines, ""]


def _verbs(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {verb}" for verb, n in sorted(counts.items()) if n) or "none"


def _ratio(ours: float, theirs: float) -> float:
    return ours / theirs if theirs else math.inf


def _met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _expected_pages(result: StageResult) -> int:
    return math.ceil(result.size / result.page_size)


def _naive_of(result: StageResult) -> Timed:
    if result.naive is None:
        raise ValueError("the naive script did not run")
    return result.naive


def _targets(results: Sequence[StageResult]) -> list[str]:
    result = max(results, key=lambda r: r.size)
    steady = result.steady
    writes = max((c.kube_writes for c in steady), default=0)
    egp = sorted({c.egp_list_requests for c in steady})
    cpu = result.steady_cpu
    at = f"N = {result.size:,}"
    rows: list[tuple[str, str, str]] = [
        (
            f"steady state at {at}: 0 Kubernetes writes",
            f"{writes} per cycle (max)",
            _met(writes == 0),
        ),
        (
            f"steady state at {at}: EGP requests = ceil(N/pageSize) = {_expected_pages(result)}",
            ", ".join(str(n) for n in egp),
            _met(egp == [_expected_pages(result)]),
        ),
        (
            f"steady state at {at}: CPU <= {TARGET_CPU:g} s per cycle",
            f"{cpu:.2f} s (median)",
            _met(cpu <= TARGET_CPU),
        ),
        (
            f"peak RSS at {at} <= {TARGET_PEAK_RSS // MB} MB",
            f"{result.peak_rss / MB:.0f} MB",
            _met(result.peak_rss <= TARGET_PEAK_RSS),
        ),
    ]
    for stage in results:
        for run in stage.plain:
            if run.library != TARGET_LIBRARY:
                continue
            initial = _ratio(stage.initial_seconds, run.initial.seconds)
            rows.append(
                (
                    f"initial mirror of {stage.size:,} within {TARGET_INITIAL_RATIO}x of the"
                    f" plain client ({run.library})",
                    f"{initial:.2f}x",
                    _met(initial <= TARGET_INITIAL_RATIO),
                )
            )
            # The limit of a churn is the writes a changed phase needs by design (the phase
            # label, the status, the Event): the same client making only the status patches
            # is shown too.
            same = _ratio(stage.churn_seconds, run.churn_same_seconds)
            status_only = _ratio(stage.churn_seconds, run.churn_status_seconds)
            rows.append(
                (
                    f"churn of {stage.churned:,} of {stage.size:,} within"
                    f" {TARGET_CHURN_RATIO}x of the plain client ({run.library}) making the"
                    " same writes",
                    f"{same:.2f}x ({status_only:.2f}x of it making the status patches only)",
                    _met(same <= TARGET_CHURN_RATIO),
                )
            )
    return _table(("target", "measured", ""), rows)


def _initial(results: Sequence[StageResult]) -> list[str]:
    rows = []
    for r in results:
        first = r.initial_cycles[0] if r.initial_cycles else None
        rows.append(
            (
                f"{r.size:,}",
                "operator",
                f"{r.initial_seconds:.1f}",
                "",
                f"{r.size / r.initial_seconds:.0f}",
                _verbs(first.kube_by_verb) if first else "?",
                f"{r.initial_cpu_seconds:.1f}",
                f"{r.initial_plane_cpu_seconds:.1f}",
            )
        )
        for run in r.plain:
            plain = run.initial
            rows.append(
                (
                    f"{r.size:,}",
                    f"plain client ({run.library})",
                    f"{plain.seconds:.1f}",
                    f"**{_ratio(r.initial_seconds, plain.seconds):.2f}x**",
                    f"{r.size / plain.seconds:.0f}",
                    _verbs(plain.requests),
                    f"{plain.cpu_seconds:.1f}",
                    f"{run.initial_plane_cpu:.1f}",
                )
            )
    header = (
        "N",
        "client",
        "wall s",
        "operator / this",
        "models/s",
        "Kubernetes requests",
        "client CPU s",
        "control plane CPU s",
    )
    return _table(header, rows)


def _steady(results: Sequence[StageResult]) -> list[str]:
    rows = []
    for r in results:
        labelled: list[tuple[str, CycleStats | None]] = [
            ("settling (the one after the mirror)", r.settle),
            *((f"steady {i + 1}", c) for i, c in enumerate(r.steady)),
            ("the one after the churn", r.after_churn),
        ]
        for label, cycle in labelled:
            if cycle is None:
                continue
            rows.append(
                (
                    f"{r.size:,}",
                    label,
                    f"{cycle.egp_list_requests} ({_expected_pages(r)})",
                    cycle.kube_reads,
                    cycle.kube_writes,
                    f"{cycle.cpu_seconds:.2f}",
                    f"{cycle.cycle_seconds:.2f}",
                    f"{cycle.plane_cpu_seconds:.2f}",
                )
            )
    header = (
        "N",
        "cycle",
        "EGP requests (ceil(N/pageSize))",
        "Kubernetes reads",
        "Kubernetes writes",
        "operator CPU s",
        "cycle wall s",
        "control plane CPU s",
    )
    return _table(header, rows)


def _churn(results: Sequence[StageResult]) -> list[str]:
    rows = []
    for r in results:
        for i, churn in enumerate(r.churn):
            rows.append(
                (
                    f"{r.size:,}",
                    f"{r.churned:,}",
                    f"operator, churn cycle {i + 1}",
                    _verbs(churn.kube_by_verb),
                    f"{churn.cycle_seconds:.2f}",
                    "",
                    f"{churn.cpu_seconds:.2f} (with the wait before the cycle)",
                )
            )
        for run in r.plain:
            for what, timings, median in (
                ("the operator's writes", run.churn_same, run.churn_same_seconds),
                ("status only", run.churn_status, run.churn_status_seconds),
            ):
                rows.append(
                    (
                        f"{r.size:,}",
                        f"{r.churned:,}",
                        f"plain client ({run.library}): {what}",
                        _verbs(timings[0].requests),
                        " / ".join(f"{t.seconds:.2f}" for t in timings),
                        f"**{_ratio(r.churn_seconds, median):.2f}x**",
                        " / ".join(f"{t.cpu_seconds:.2f}" for t in timings),
                    )
                )
    header = (
        "N",
        "models changed",
        "client",
        "Kubernetes requests (each round)",
        "wall s (each round)",
        "operator / this (medians)",
        "client CPU s",
    )
    timing = [
        (
            f"{r.size:,}",
            f"{i + 1}",
            f"{churn.cycle_seconds:.2f}",
            f"{r.churn_from_cycle_start_seconds[i]:.2f}",
            f"{r.churn_converge_seconds[i]:.1f}",
        )
        for r in results
        for i, churn in enumerate(r.churn)
    ]
    return [
        *_table(header, rows),
        "Convergence as seen by a watch (the upstream change waits for the next cycle):",
        "",
        *_table(
            (
                "N",
                "round",
                "churn cycle wall s",
                "cycle start to converged s",
                "upstream change to converged s",
            ),
            timing,
        ),
    ]


def _memory(results: Sequence[StageResult]) -> list[str]:
    rows = [
        (
            f"{r.size:,}",
            f"{r.rss_start / MB:.0f}",
            f"{r.rss_mirrored / MB:.0f}",
            f"{r.rss_end / MB:.0f}",
            f"**{r.peak_rss / MB:.0f}**",
            f"{(r.rss_mirrored - r.rss_start) / r.size:,.0f}",
        )
        for r in results
    ]
    header = (
        "N",
        "RSS idle, before the source (MB)",
        "RSS after the steady cycles (MB)",
        "RSS at the end (MB)",
        "peak RSS, VmHWM (MB)",
        "bytes per mirrored model",
    )
    return _table(header, rows)


def _naive(results: Sequence[StageResult]) -> list[str]:
    rows = []
    for r in results:
        naive = _naive_of(r)
        steady = r.steady_median
        rows.append(
            (
                f"{r.size:,}",
                f"{naive.seconds:.1f}",
                naive.requests.get("EGP GET", 0),
                naive.requests.get("GET", 0),
                naive.requests.get("PATCH", 0),
                f"{naive.cpu_seconds:.1f}",
                (
                    f"{steady.cycle_seconds:.2f} s, {steady.egp_list_requests} EGP +"
                    f" {steady.kube_reads + steady.kube_writes} Kubernetes requests"
                    if steady
                    else "?"
                ),
            )
        )
    header = (
        "N",
        "wall s",
        "EGP requests",
        "Kubernetes GET",
        "Kubernetes PATCH",
        "script CPU s",
        "operator steady cycle, for comparison",
    )
    return _table(header, rows)


def render(command: str, machine: dict[str, str], results: Sequence[StageResult]) -> str:
    if not results:
        raise ValueError("nothing was measured")
    largest = max(results, key=lambda r: r.size)
    first = results[0]
    versions = {**machine, "Kubernetes (server)": largest.kubernetes_version}
    lines = [
        "# What a sync costs",
        "",
        "Generated by `bench/run.py` (see bench/README.md for the method); do not edit by hand.",
        "",
        "```sh",
        command,
        "```",
        "",
        *_table(("", ""), versions.items()),
        f"EGPSource: pageSize {first.page_size}, refreshInterval 10s; operator:"
        f" EGP_OPERATOR_KUBE_CONCURRENCY={first.concurrency},"
        " EGP_OPERATOR_STATUS_HEARTBEAT_SECONDS=3600; the plain client runs at the same"
        " concurrency. Each N runs on a fresh control plane.",
        "",
        "## Targets",
        "",
        *_targets(results),
        "## 1. Initial mirror",
        "",
        "From creating the EGPSource until every EGPModel has `status.phase` (seen by a watch),"
        " against the plain concurrent client making the same creates and status patches"
        " (same bodies, from the operator's planner) in a fresh namespace of the same API"
        " server, with the operator stopped: once over httpx, once over aiohttp (what the"
        " operator's Kubernetes requests and kopf use), the practical limit of this machine.",
        "",
        *_initial(results),
        "## 2. Steady state",
        "",
        "Counters are sampled when a cycle's log line appears, so each row is one cycle plus"
        " the wait before it (refreshInterval 10 s with jitter). The operator's CPU while idle,"
        " before any source exists: "
        + ", ".join(f"{r.idle_cpu_per_10s:.2f} s per 10 s (N = {r.size:,})" for r in results)
        + ". Cycle wall time is the `egp_operator_sync_duration_seconds` delta.",
        "",
        *_steady(results),
        "## 3. Churn",
        "",
        "Right after a cycle, a share of the models flips status upstream (ready <-> failed), so"
        " every one changes phase: its labels, its status and an Event are written. The plain"
        " client then does the same in its namespace: once the operator's very writes (label"
        " patch, status patch, Event), once only the status patches. Each round flips the same"
        " models again. The operator's time is the churn cycle's wall time (listing EGP and"
        " planning included); ratios compare medians over the rounds.",
        "",
        *_churn(results),
        "## 4. Memory of the operator process",
        "",
        *_memory(results),
        "## 5. The naive script",
        "",
        "What a CronJob would do with the official `kubernetes` client: walk EGP, then GET and"
        " PATCH the status of every EGPModel, one request after the other, unconditionally.",
        "",
        *_naive(results),
    ]
    return with_many_sources("\n".join(lines).rstrip() + "\n")


#: The last recorded many-sources run (`python -m bench.many_sources --record`), and its plot.
MANY_SOURCES_JSON = Path(__file__).resolve().parent / "many_sources.json"
MANY_SOURCES_HEADING = "## 6. Many sources"
#: The last recorded scale runs (`python -m bench.many_sources --sources 100,1000,3000
#: --restart --record-scale`).
MANY_SOURCES_SCALE_JSON = Path(__file__).resolve().parent / "many_sources_scale.json"


def _scrape(summary: dict[str, Any]) -> str:
    return f"{summary['scrape KB']:.0f}, {summary['scrape ms']:.0f}"


def many_sources_section(raw: dict[str, Any]) -> list[str]:
    """The section of RESULTS.md for a many-sources run, from its JSON."""
    summary = raw["summary"]
    last = raw["samples"][-1]["seconds"] if raw["samples"] else 0.0
    minutes = (last - (raw.get("mirrored_after_seconds") or 0.0)) / 60
    rows = [
        (
            "RSS slope after the first mirror (least squares)",
            f"{summary['rss slope MB/h']:.1f} MB per hour",
        ),
        ("RSS idle, before any source (MB)", f"{raw['idle_rss_mb']:.0f}"),
        (
            "RSS after the first mirror, and at the end (MB)",
            f"{summary['rss start MB']:.0f}, {summary['rss end MB']:.0f}",
        ),
        ("RSS per source (KB)", f"{summary['rss per source KB']:.0f}"),
        ("operator CPU, share of a core", f"{summary['cpu share of a core'] * 100:.1f}%"),
        ("CPU per source and cycle (ms)", f"{summary['cpu ms per source cycle']:.1f}"),
        (
            "Kubernetes requests per source and cycle",
            f"{summary['kubernetes requests per source cycle']:.2f}",
        ),
        ("EGP requests per source and cycle", f"{summary['egp requests per source cycle']:.2f}"),
    ]
    if "scrape KB" in summary:
        rows += [
            (
                "Secret watch upkeep, requests per minute (LIST, WATCH)",
                f"{summary['secret watch requests per minute']:.1f}",
            ),
            ("/metrics scrape: size (KB), time (ms)", _scrape(summary)),
        ]
    peer = raw.get("peer_summary") or {}
    if peer:
        rows += [
            (
                "Peer in the same run: ESO v0.16.2 (fake provider only), RSS after the first"
                " mirror and at the end (MB)",
                f"{peer['peer rss start MB']:.0f}, {peer['peer rss end MB']:.0f}",
            ),
            ("Peer RSS slope", f"{peer['peer rss slope MB/h']:.1f} MB per hour"),
            ("Peer CPU, share of a core", f"{peer['peer cpu share of a core'] * 100:.1f}%"),
            (
                "Operator / peer: RSS at the end, CPU",
                f"{peer['rss ratio to the peer']:.2f}x, {peer['cpu ratio to the peer']:.2f}x",
            ),
        ]
    namespaces = raw.get("namespaces") or raw["sources"]
    where = (
        "one namespace and EGP account each"
        if namespaces == raw["sources"]
        else f"in {namespaces:,} namespaces (one credentials Secret each), one EGP account each"
    )
    return [
        MANY_SOURCES_HEADING,
        "",
        f"{raw['sources']:,} EGPSources, {raw['models_per_source']} model(s) each, {where},"
        f" refreshInterval {raw['interval']}, sampled from"
        f" their creation until {minutes:.0f} minutes after their first mirror"
        " (bench/many_sources.py):",
        "",
        "```sh",
        raw["command"],
        "```",
        "",
        *_table(("", "measured"), rows),
        "![The operator's RSS over the run](many_sources.png)",
        "",
    ]


def many_sources_scale_section(raws: list[dict[str, Any]]) -> list[str]:
    """The table of the scale runs: what a source costs as sources multiply, and how the
    first cycles after a restart spread."""
    if not raws:
        return []
    rows = []
    for raw in raws:
        summary, restart = raw["summary"], raw.get("restart_summary") or {}
        rows.append(
            (
                f"{raw['sources']:,}",
                f"{summary['rss end MB']:.0f}",
                f"{summary['rss per source KB']:.0f}",
                f"{summary['rss slope MB/h']:.0f}",
                f"{summary['cpu share of a core'] * 100:.1f}%",
                f"{summary['cpu ms per source cycle']:.1f}",
                f"{summary['kubernetes requests per source cycle']:.2f}",
                f"{summary['egp requests per source cycle']:.2f}",
                f"{restart.get('restart: seconds until every source cycled', float('nan')):.0f}",
                f"{restart.get('restart: busiest 5 s, cycles per second', float('nan')):.1f}"
                f" ({restart.get('steady cycles per second', float('nan')):.1f})",
            )
        )
    minutes = raws[0]["samples"][-1]["seconds"] / 60 if raws[0]["samples"] else 0.0
    return [
        "### As sources multiply",
        "",
        f"{raws[0]['models_per_source']} model(s) per source, refreshInterval"
        f" {raws[0]['interval']}, each count on a fresh control plane, sampled for"
        f" {minutes:.0f} minutes; then the operator is restarted, as a rollout does, and"
        " its first cycles are counted every second:",
        "",
        "```sh",
        *dict.fromkeys(raw["command"] for raw in raws),
        "```",
        "",
        *_table(
            (
                "sources",
                "RSS at the end (MB)",
                "RSS per source (KB)",
                "RSS slope (MB/h)",
                "CPU, share of a core",
                "CPU per source cycle (ms)",
                "Kubernetes requests per source cycle",
                "EGP requests per source cycle",
                "restart: s until every source cycled",
                "restart: busiest 5 s, cycles/s (steady rate)",
            ),
            rows,
        ),
    ]


#: The last recorded growth runs (`python -m bench.many_sources --sources 1 --models
#: 1000,10000,50000 --record-growth`).
MANY_SOURCES_GROWTH_JSON = Path(__file__).resolve().parent / "many_sources_growth.json"


def _steady_cycle_cpu(raw: dict[str, Any]) -> float:
    """CPU seconds per cycle over the samples from one interval after the first mirror (the
    watch events of the mirror's writes are digested by then)."""
    start = raw["mirrored_after_seconds"] + parse_duration(raw["interval"]).total_seconds()
    steady = [sample for sample in raw["samples"] if sample["seconds"] >= start]
    if len(steady) < 2 or steady[-1]["cycles"] == steady[0]["cycles"]:
        return math.nan
    first, last = steady[0], steady[-1]
    return float((last["cpu_seconds"] - first["cpu_seconds"]) / (last["cycles"] - first["cycles"]))


def many_sources_growth_section(raws: list[dict[str, Any]]) -> list[str]:
    """One source as its models grow: first mirror, steady cycle, memory, and the slopes."""
    if not raws:
        return []
    rows = []
    points = []
    for raw in raws:
        models = raw["models_per_source"]
        mirror = raw["mirrored_after_seconds"]
        if not mirror:  # the first mirror did not end within the run
            rows.append((f"{models:,}", "did not end", "", "", f"{raw['peak_rss_mb']:.0f}", "", ""))
            continue
        steady_cpu = _steady_cycle_cpu(raw)
        end_rss = raw["samples"][-1]["rss_mb"] if raw["samples"] else math.nan
        points.append((models, mirror, steady_cpu, raw["peak_rss_mb"], end_rss))
        rows.append(
            (
                f"{models:,}",
                f"{mirror:.0f}",
                f"{models / mirror:.0f}" if mirror else "",
                f"{steady_cpu:.2f}",
                f"{raw['peak_rss_mb']:.0f}",
                f"{end_rss:.0f}",
                f"{(end_rss - raw['idle_rss_mb']) * 1024 / models:.1f}",
            )
        )
    slopes = []
    for (n0, m0, c0, p0, r0), (n1, m1, c1, p1, r1) in itertools.pairwise(points):
        per_thousand = 1000 / (n1 - n0)
        slopes.append(
            (
                f"{n0:,} -> {n1:,}",
                f"{(m1 - m0) * per_thousand:.1f}",
                f"{(c1 - c0) * per_thousand:.3f}",
                f"{(p1 - p0) * per_thousand:.1f}",
                f"{(r1 - r0) * per_thousand:.1f}",
            )
        )
    sample_every = (
        raws[0]["samples"][1]["seconds"] - raws[0]["samples"][0]["seconds"]
        if len(raws[0]["samples"]) > 1
        else math.nan
    )
    return [
        "### One source as its models grow",
        "",
        f"One EGPSource, refreshInterval {raws[0]['interval']}, pageSize 500, each count on a"
        " fresh control plane. The first mirror is timed from the source's creation to the end"
        f" of its first cycle, to the nearest {sample_every:.0f} s; the steady cycle is the"
        " operator's CPU per cycle from one interval after it; the operator's limits on a"
        " listing are raised above 20,000 models:",
        "",
        "```sh",
        *dict.fromkeys(raw["command"] for raw in raws),
        "```",
        "",
        *_table(
            (
                "models",
                "first mirror (s)",
                "models/s",
                "steady cycle CPU (s)",
                "peak RSS, VmHWM (MB)",
                "RSS at the end (MB)",
                "KB per model (RSS at the end - idle)",
            ),
            rows,
        ),
        "Slopes, per 1,000 more models:",
        "",
        *_table(
            (
                "from -> to",
                "first mirror (s)",
                "steady cycle CPU (s)",
                "peak RSS (MB)",
                "RSS at the end (MB)",
            ),
            slopes,
        ),
    ]


def with_many_sources(text: str) -> str:
    """`text` (RESULTS.md) with the many-sources section of the recorded runs, if any."""
    text = text.split(MANY_SOURCES_HEADING, 1)[0].rstrip("\n") + "\n"
    if not MANY_SOURCES_JSON.is_file():
        return text
    raw = json.loads(MANY_SOURCES_JSON.read_text())
    scale, growth = (
        json.loads(path.read_text()) if path.is_file() else []
        for path in (MANY_SOURCES_SCALE_JSON, MANY_SOURCES_GROWTH_JSON)
    )
    sections = [
        *many_sources_section(raw),
        *many_sources_scale_section(scale),
        *many_sources_growth_section(growth),
    ]
    return text + "\n" + "\n".join(sections)
