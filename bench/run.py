"""`python -m bench.run`: measure what a sync costs and write bench/RESULTS.md.

Starts, per size N, its own control plane (etcd, kube-apiserver, kube-controller-manager on
loopback, in a temporary folder) with the CRDs of crds/ and a ClusterKopfPeering; one local EGP
server (`fake-egp`, its own process) serves every stage; the operator runs as in
production (`egp-operator run`). Everything started is stopped again, even on failure or
SIGTERM; the temporary folder (logs) is kept only when something failed or with --keep.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

import pydantic

from bench.kubeapi import load_crds
from bench.machine import describe_machine
from bench.many_sources_report import with_many_sources
from bench.procs import FakeEGPProcess, load_average
from bench.report import render
from bench.scenario import API_KEY, StageConfig, StageResult, run_stage
from egp_testbench.cluster import find_bin_dir

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument(
        "--sizes",
        default="1000,2000,10000",
        help="comma-separated model counts (default 1000,2000,10000)",
    )
    parser.add_argument("--page-size", type=int, default=500, help="EGPSource pageSize")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=int(os.environ.get("EGP_OPERATOR_KUBE_CONCURRENCY", "16")),
        help="EGP_OPERATOR_KUBE_CONCURRENCY, and the plain client's (default 16)",
    )
    parser.add_argument("--steady-cycles", type=int, default=3)
    parser.add_argument(
        "--churn-fraction", type=float, default=0.1, help="share of models flipped upstream"
    )
    parser.add_argument(
        "--churn-rounds", type=int, default=2, help="churns measured (each flips them again)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", type=Path, default=BENCH_DIR / "RESULTS.md")
    parser.add_argument(
        "--json", type=Path, default=None, help="also write the raw numbers here (JSON)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    parser.add_argument(
        "--render-from",
        type=Path,
        default=None,
        help="measure nothing: render --output again from a --json file of an earlier run",
    )
    return parser


def _render_again(raw_file: Path, output: Path) -> int:
    """The report's wording can change after a run; the measurements stay what they were."""
    raw = json.loads(raw_file.read_text())
    stages = pydantic.TypeAdapter(list[StageResult]).validate_python(raw["stages"])
    output.write_text(with_many_sources(render(raw["command"], raw["machine"], stages)))
    print(f"bench: wrote {output} from {raw_file}")
    return 0


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds every context manager: children are stopped


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.render_from is not None:
        return _render_again(args.render_from, args.output)
    sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    signal.signal(signal.SIGTERM, _terminate)
    command = shlex.join(
        [
            Path(sys.executable).relative_to(REPO).as_posix()
            if Path(sys.executable).is_relative_to(REPO)
            else sys.executable,
            "-m",
            "bench.run",
            *(argv if argv is not None else sys.argv[1:]),
        ]
    )
    bin_dir = find_bin_dir(build=True)
    work_dir = Path(tempfile.mkdtemp(prefix="egp-bench-"))
    print(f"bench: working in {work_dir}", flush=True)
    machine = describe_machine(bin_dir, REPO)
    started = time.time()
    results: list[StageResult] = []
    failed = True
    egp = FakeEGPProcess(work_dir / "fake-egp.log", api_key=API_KEY, account_id="acct-bench")
    try:
        for size in sizes:
            config = StageConfig(
                size=size,
                page_size=args.page_size,
                concurrency=args.concurrency,
                steady_cycles=args.steady_cycles,
                churn_fraction=args.churn_fraction,
                churn_rounds=args.churn_rounds,
                seed=args.seed,
                crds=tuple(load_crds(REPO / "crds")),
                bin_dir=bin_dir,
                work_dir=work_dir,
            )
            results.append(asyncio.run(run_stage(config, egp)))
        failed = False
    finally:
        egp.stop()
        if failed or args.keep:
            print(f"bench: logs kept in {work_dir}", file=sys.stderr)
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
    machine["load average (1 min) at the end"] = f"{load_average():.2f}"
    machine["duration"] = f"{(time.time() - started) / 60:.1f} min"
    args.output.write_text(with_many_sources(render(command, machine, results)))
    print(f"bench: wrote {args.output}")
    if args.json is not None:
        raw: dict[str, Any] = {
            "command": command,
            "machine": machine,
            "stages": [dataclasses.asdict(result) for result in results],
        }
        args.json.write_text(json.dumps(raw, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
