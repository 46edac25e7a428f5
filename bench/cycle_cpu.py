"""CPU of one steady sync cycle without Kubernetes: list N unchanged models from the local EGP
server and plan them against their mirror. This is the part of a cycle that the operator's own
code decides (the writes of a steady state are zero), so it is what a change to the client, the
planner or the status builders move.

    .venv/bin/python -m bench.cycle_cpu --models 10000 --cycles 7
    PYTHONPATH=/path/to/other/checkout/operator .venv/bin/python -m bench.cycle_cpu ...

It prints one line: the median, min and max CPU seconds per cycle (this process only; the EGP
server runs in its own). Run two versions in turn, several times, and compare medians.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.procs import FakeEGPProcess
from egp_operator.egp import EGPClient
from egp_operator.sync.mirrored import MirroredModel, StoredStatus
from egp_operator.sync.planner import SourcePolicy, make_plan
from egp_operator.sync.upstream import UpstreamModel, keep_for_mirror

API_KEY = "sk-bench-cycle-cpu"
ACCOUNT = "acct-cycle-cpu"
POLICY = SourcePolicy("bench", "src")


async def _list(url: str, page_size: int) -> tuple[float, list[UpstreamModel]]:
    cpu = time.process_time()
    async with EGPClient(base_url=url, api_key=API_KEY, account_id=ACCOUNT) as client:
        listing = await client.walk_models(keep_for_mirror, page_size=page_size)
    return time.process_time() - cpu, list(listing.models)


async def measure(url: str, *, cycles: int, page_size: int) -> list[float]:
    _, models = await _list(url, page_size)
    now = datetime.now(UTC)
    first = make_plan(models, [], POLICY, now)
    mirrored = [
        MirroredModel(c.name, c.model_id, c.labels, StoredStatus.of(c.status))
        for c in first.creates
    ]
    seconds: list[float] = []
    for _ in range(cycles):
        listing_cpu, models = await _list(url, page_size)
        cpu = time.process_time()
        steady = make_plan(models, mirrored, POLICY, now)
        seconds.append(listing_cpu + time.process_time() - cpu)
        if not steady.is_empty:
            raise SystemExit("a steady cycle planned writes: not a steady state")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cycle_cpu", description=__doc__)
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--cycles", type=int, default=7)
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        egp = FakeEGPProcess(Path(work) / "fake-egp.log", api_key=API_KEY, account_id=ACCOUNT)
        try:
            egp.add_account(API_KEY, ACCOUNT, args.models, args.seed)
            seconds = asyncio.run(measure(egp.url, cycles=args.cycles, page_size=args.page_size))
        finally:
            egp.stop()
    print(
        f"cpu per steady cycle, {args.models} models: median {statistics.median(seconds):.3f} s"
        f" (min {min(seconds):.3f}, max {max(seconds):.3f}, {len(seconds)} cycles)"
    )


if __name__ == "__main__":
    main()
