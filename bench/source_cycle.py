"""`python -m bench.source_cycle`: the CPU of one source's cycle alone, in one process.

    .venv/bin/python -m bench.source_cycle --cycles 3000

One source of one model, settled: its EGPModel is mirrored with the status its first cycle
wrote, so each measured cycle reads the Secret, lists EGP, plans and finds nothing to write, as
a steady cycle of the many-sources soak does. EGP is the local server (`fake-egp`, its own
process); Kubernetes is an in-memory stand-in that answers the Secret and keeps the writes. It
reports CPU ms per `SourceSyncer.run_cycle`. Beside the soak's CPU per source cycle, the
difference is what the operator around a cycle costs: the Secret GET over the network, the
source's loop, kopf, and asyncio with many tasks (FINDINGS.md section 9).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import time
from typing import Any

from bench.procs import one_model_egp
from egp_operator.kube import KubeError, core_path, custom_path
from egp_operator.resources.models import GROUP, SOURCE_PLURAL, VERSION
from egp_operator.settings import Settings
from egp_operator.sync.cycle import SourceSyncer, read_spec
from egp_operator.sync.mirrored import mirrored_from_object

API_KEY = "sk-bench-source-cycle"
ACCOUNT = "acct-bench"
NAMESPACE, SECRET = "team-a", "egp-credentials"
SOURCE_PATH = custom_path(GROUP, VERSION, NAMESPACE, SOURCE_PLURAL, "src")


class InMemoryKube:
    """Objects by path: GETs answered, creates and status patches kept."""

    concurrency = 4

    def __init__(self, objects: dict[str, Any]) -> None:
        self.objects = objects
        self.writes = 0

    async def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        if path not in self.objects:
            raise KubeError(404, "NotFound", path)
        return self.objects[path]

    async def create(self, path: str, body: Any) -> Any:
        self.writes += 1
        name = body["metadata"]["name"]
        stored = {**body, "metadata": {**body["metadata"], "uid": f"uid-{name}", "generation": 1}}
        self.objects[f"{path}/{name}"] = stored
        return stored

    async def json_patch(self, path: str, operations: list[dict[str, Any]] | str) -> Any:
        self.writes += 1
        steps: list[dict[str, Any]] = (
            json.loads(operations) if isinstance(operations, str) else operations
        )
        target = self.objects.get(path.removesuffix("/status"), {})
        for operation in steps:
            if operation["path"] == "/status":
                target["status"] = operation["value"]
        return target

    async def merge_patch(self, path: str, body: dict[str, Any]) -> Any:
        self.writes += 1
        target = self.objects.setdefault(path.removesuffix("/status"), {})
        target.update(body)
        return target

    async def delete(self, path: str) -> Any:
        self.writes += 1
        return self.objects.pop(path, None)


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
    kube = InMemoryKube({core_path(NAMESPACE, "secrets", SECRET): secret})
    syncer = SourceSyncer(kube, Settings())
    source = _source(base_url)
    try:
        for _ in range(2):  # the first creates the model and writes statuses; the second settles
            models = [
                mirrored_from_object(obj)
                for path, obj in kube.objects.items()
                if "/egpmodels/" in path
            ]
            await syncer.run_cycle(source, models)
            source["status"] = kube.objects.get(SOURCE_PATH, {}).get("status")
        writes_before = kube.writes
        spec = read_spec(source)
        started = time.process_time()
        for _ in range(cycles):
            await syncer.run_cycle(source, models, spec=spec)
        spent = time.process_time() - started
    finally:
        await syncer.aclose()
    print(
        f"{1000 * spent / cycles:.3f} ms of CPU per cycle over {cycles} cycles"
        f" ({kube.writes - writes_before} Kubernetes writes while measured)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.source_cycle", description=__doc__)
    parser.add_argument("--cycles", type=int, default=3000)
    args = parser.parse_args()
    with one_model_egp(API_KEY, ACCOUNT) as url:
        asyncio.run(_measure(url, args.cycles))


if __name__ == "__main__":
    main()
