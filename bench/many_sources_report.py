"""Section 6 of bench/RESULTS.md, "Many sources", rendered from the recorded runs of
`python -m bench.many_sources` (many_sources.json, many_sources_scale.json,
many_sources_growth.json): `bench.many_sources --record*` and `bench.run` both end RESULTS.md
with it."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

from bench.report import table
from egp_operator.resources.models import parse_duration

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
        *table(("", "measured"), rows),
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
        *table(
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
        *table(
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
        *table(
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
