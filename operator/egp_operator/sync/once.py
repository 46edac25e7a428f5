"""`egp-operator sync --once`: one cycle of one EGPSource outside the operator, for debugging
and for seeing what the operator would do (`--dry-run` prints the plan and writes nothing)."""

from __future__ import annotations

from typing import TextIO

from egp_operator.kube import KubeAPI, KubeClient, KubeError, custom_path, load_configuration
from egp_operator.resources.models import GROUP, SOURCE_PLURAL, VERSION
from egp_operator.settings import Settings
from egp_operator.sync.cycle import CycleReport, SourceSyncer
from egp_operator.sync.mirrored import list_mirrored


async def sync_once(
    source_name: str, *, namespace: str, settings: Settings, dry_run: bool, out: TextIO
) -> int:
    """The command: against the cluster of KUBECONFIG (or the in-cluster config)."""
    kube = KubeClient(load_configuration(), concurrency=settings.kube_concurrency)
    try:
        return await sync_source_once(
            kube, source_name, namespace=namespace, settings=settings, dry_run=dry_run, out=out
        )
    finally:
        await kube.aclose()


async def sync_source_once(
    kube: KubeAPI,
    source_name: str,
    *,
    namespace: str,
    settings: Settings,
    dry_run: bool,
    out: TextIO,
) -> int:
    """One cycle of the source, its plan and outcome written to `out`; 0 when it synced."""
    try:
        source = await kube.get(custom_path(GROUP, VERSION, namespace, SOURCE_PLURAL, source_name))
    except KubeError as error:
        out.write(f"EGPSource {namespace}/{source_name}: {error}\n")
        return 1
    mirrored = await list_mirrored(kube, namespace, source_name)
    async with SourceSyncer(kube, settings) as syncer:
        report = await syncer.run_cycle(source, mirrored, dry_run=dry_run)
    out.write(render_report(report, dry_run=dry_run))
    return 0 if report.outcome.ok else 1


def render_report(report: CycleReport, *, dry_run: bool) -> str:
    """A readable table of the plan, then the outcome."""
    lines: list[str] = []
    plan = report.plan
    if plan is not None:
        rows = [("ACTION", "OBJECT", "MODEL ID", "DETAIL")]
        rows += [("create", c.name, c.model_id, c.status["phase"]) for c in plan.creates]
        for update in plan.updates:
            changed = [
                what
                for what, new in (("labels", update.labels), ("status", update.status))
                if new is not None
            ]
            phase = update.status["phase"] if update.status else ""
            rows.append(("update", update.name, update.model_id, f"{'+'.join(changed)} {phase}"))
        rows += [("delete", d.name, d.model_id, d.reason) for d in plan.deletes]
        rows += [("event", e.object_name, "", f"{e.type} {e.reason}") for e in plan.events]
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines += [
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in rows
        ]
        counts = ", ".join(f"{phase}={n}" for phase, n in plan.phase_counts.items() if n)
        lines.append(f"models by phase: {counts or 'none'}")
    verb = "would be written (dry run)" if dry_run else "written"
    if plan is not None and plan.is_empty:
        lines.append("nothing to write: the mirror is up to date")
    elif plan is not None:
        lines.append(
            f"{len(plan.creates)} create(s), {len(plan.updates)} update(s), "
            f"{len(plan.deletes)} delete(s) {verb}"
        )
    outcome = report.outcome
    lines.append(f"outcome: {outcome.reason}: {outcome.message}")
    return "\n".join(lines) + "\n"
