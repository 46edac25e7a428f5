"""`python -m bench.source_cycle`: the CPU of one source's cycle alone, in one process.

    .venv/bin/python -m bench.source_cycle --cycles 3000

One source of one model, settled: its EGPModel is mirrored with the status its first cycle
wrote, so each measured cycle reads the Secret, lists EGP, plans and finds nothing to write, as
a steady cycle of the many-sources soak does. EGP is the local server (`fake-egp`, its own
process); Kubernetes is the tests' in-memory stand-in (egp_testbench/fake_kube.py), which
answers the Secret and keeps the writes. It reports CPU ms per `SourceSyncer.run_cycle`.
Beside the soak's CPU per source cycle, the difference is what the operator around a cycle
costs: the Secret GET over the network, the source's loop, kopf, and asyncio with many tasks
(FINDINGS.md section 9).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import time
from typing import Any

from bench.procs import one_model_egp
from egp_operator.kube import core_path, custom_path
from egp_operator.resources.models import GROUP, SOURCE_PLURAL, VERSION
from egp_operator.settings import Settings
from egp_operator.sync.cycle import SourceSyncer
from egp_operator.sync.mirrored import mirrored_from_object
from egp_operator.sync.spec import read_spec
from egp_testbench.fake_kube import FakeKube

API_KEY = "sk-bench-source-cycle"
ACCOUNT = "acct-bench"
NAMESPACE, SECRET = "team-a", "egp-credentials"
SOURCE_PATH = custom_path(GROUP, VERSION, NAMESPACE, SOURCE_PLURAL, "src")


def _source(base_url: str) -> dict[str, Any]:
    return {
        "metadata": {"namespace": NAMESPACE, "name": "src", "uid": "uid-src", "generation": 1},
        "spec": {
            "baseURL": base_url,
            "accountID": ACCOUNT,
            "credentialsSecretRef": {"name": SECRET},
            "refreshInterval": "60s",
        },
    }


async def _measure(base_url: str, cycles: int) -> None:
    secret = {
        "metadata": {"namespace": NAMESPACE, "name": SECRET},
        "data": {"apiKey": base64.b64encode(API_KEY.encode()).decode()},
    }
    source = _source(base_url)
    # The source is stored too: its status writes land on it, for the next cycle to read.
    kube = FakeKube({core_path(NAMESPACE, "secrets", SECRET): secret, SOURCE_PATH: dict(source)})
    syncer = SourceSyncer(kube, Settings())
    try:
        for _ in range(2):  # the first creates the model and writes statuses; the second settles
            models = [
                mirrored_from_object(obj)
                for path, obj in kube.objects.items()
                if "/egpmodels/" in path
            ]
            await syncer.run_cycle(source, models)
            source["status"] = kube.objects.get(SOURCE_PATH, {}).get("status")
        writes_before = kube.writes()
        spec = read_spec(source)
        started = time.process_time()
        for _ in range(cycles):
            await syncer.run_cycle(source, models, spec=spec)
        spent = time.process_time() - started
    finally:
        await syncer.aclose()
    print(
        f"{1000 * spent / cycles:.3f} ms of CPU per cycle over {cycles} cycles"
        f" ({kube.writes() - writes_before} Kubernetes writes while measured)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.source_cycle", description=__doc__)
    parser.add_argument("--cycles", type=int, default=3000)
    args = parser.parse_args()
    with one_model_egp(API_KEY, ACCOUNT) as url:
        asyncio.run(_measure(url, args.cycles))


if __name__ == "__main__":
    main()
