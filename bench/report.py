"""Sections 1 to 5 of bench/RESULTS.md, rendered from the stages `bench.run` measured (section 6
is bench/many_sources_report.py's)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from bench.baselines import Timed
from bench.scenario import CycleStats, StageResult

MB = 1024 * 1024
#: Issue 14's targets: against the plain aiohttp client (the cheapest in Python) at every size,
#: and for the steady cycle and memory at the largest.
TARGET_INITIAL_RATIO = 1.1
TARGET_CHURN_RATIO = 1.25
TARGET_CPU = 0.3
TARGET_PEAK_RSS = 150 * MB
TARGET_LIBRARY = "aiohttp"


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """A Markdown table and the blank line after it (bench/many_sources_report.py's too)."""
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
    return table(("target", "measured", ""), rows)


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
    return table(header, rows)


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
    return table(header, rows)


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
        *table(header, rows),
        "Convergence as seen by a watch (the upstream change waits for the next cycle):",
        "",
        *table(
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
    return table(header, rows)


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
    return table(header, rows)


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
        *table(("", ""), versions.items()),
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
    return "\n".join(lines).rstrip() + "\n"
