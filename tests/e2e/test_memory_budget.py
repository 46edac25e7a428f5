"""The operator's memory under the worst listing an endpoint can send at the defaults, driven
through the real operator on the local control plane: eight pages just under the 4 MiB page
cap, 1,000 valid models each, padded with an unknown field of empty JSON objects (30 times
their bytes once decoded). It once took the operator to a peak RSS of 807 MB, past the 512 MiB
limit of its Deployment: in a Pod, an OOM kill at every restart.

The operator runs as in production, with the defaults, inside a memory cgroup of 512 MiB when
the machine lets the test make one (the test's own cgroup v1 `memory` controller, as root), so
that going over would be the kernel's OOM kill; its peak RSS (VmHWM) is asserted either way,
and printed for docs/security.md.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

from egp_testbench.cluster import LocalControlPlane
from tests.e2e.harness import (
    EGP_ACCOUNT,
    EGP_KEY,
    Mirror,
    create_peering,
    install_crds,
    running_operator,
)
from tests.e2e.polling import eventually
from tests.integration.hostile_server import HostileServer, RecordedRequest, Reply, Respond

MIB: Final = 1024 * 1024
LIMIT: Final = 512 * MIB  # the Deployment's and the chart's memory limit
PAGES: Final = 8
PER_PAGE: Final = 1000
PAGE_CAP: Final = 4 * MIB  # EGP_OPERATOR_MAX_PAGE_BYTES's default
MEMORY_CGROUPS: Final = Path("/sys/fs/cgroup/memory")


def padded_page(number: int) -> bytes:
    """Page `number` (0-based): 1,000 valid models, each padded with empty objects so that
    the page is just under the page cap."""
    head = b'{"object":"list","total":%d,"has_more":%s,"items":[' % (
        PAGES * PER_PAGE,
        b"true" if number < PAGES - 1 else b"false",
    )
    model = (
        b'{"id":"m-%d-%04d","name":"padded-%d-%d","model_type":"generic",'
        b'"model_vendor":"launch","status":"ready","created_at":"2026-01-01T00:00:00Z",'
        b'"created_by_user_id":"u-1","padding":[%s]}'
    )
    room = (PAGE_CAP - len(head) - 64) // PER_PAGE - len(model % (number, 9999, number, 9999, b""))
    padding = b",".join([b"{}"] * ((room + 1) // 3))  # each `{}` and its comma: 3 bytes
    items = b",".join(model % (number, i, number, i, padding) for i in range(PER_PAGE))
    body = head + items + b"]}"
    assert PAGE_CAP - 64 * 1024 < len(body) < PAGE_CAP
    return body


class PaddedAccount:
    """Serves the eight padded pages by their cursor, each built once."""

    def __init__(self) -> None:
        self._pages: dict[int, bytes] = {}

    async def __call__(self, request: RecordedRequest, reply: Reply) -> None:
        if request.headers.get("x-api-key") != EGP_KEY:
            await Respond(401, b'{"detail":"Invalid API key"}')(request, reply)
            return
        cursor = request.query.get("starting_after", [""])[0]
        number = int(cursor.split("-")[1]) + 1 if cursor else 0
        if number not in self._pages:
            self._pages[number] = padded_page(number)
        await Respond(200, self._pages[number])(request, reply)


@contextlib.contextmanager
def memory_limited(pid: int, limit: int) -> Iterator[Path | None]:
    """`pid` inside a memory cgroup of `limit` bytes, if this machine lets the test make one
    (yields its folder), else as it is (yields None)."""
    group = MEMORY_CGROUPS / f"egp-e2e-{uuid.uuid4().hex[:8]}"
    try:
        group.mkdir()
        (group / "memory.limit_in_bytes").write_text(str(limit))
        (group / "cgroup.procs").write_text(str(pid))
    except OSError:
        with contextlib.suppress(OSError):
            group.rmdir()
        yield None
        return
    try:
        yield group
    finally:
        with contextlib.suppress(OSError):
            (MEMORY_CGROUPS / "cgroup.procs").write_text(str(pid))
        with contextlib.suppress(OSError):
            group.rmdir()


def peak_rss(pid: int) -> int:
    """VmHWM: the most resident memory the process ever had, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for {pid}")


@pytest.fixture(scope="module")
def own_plane(
    kube_bin_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalControlPlane]:
    """A control plane of this test's own: its 8,000 EGPModels go with it, instead of loading
    the shared API server under the tests that come next while they are deleted."""
    with LocalControlPlane(kube_bin_dir, tmp_path_factory.mktemp("memory-cluster")) as plane:
        install_crds(plane)
        create_peering(plane)
        yield plane


@pytest.mark.timeout(900)
def test_the_worst_amplifying_listing_is_mirrored_within_the_memory_limit(
    own_plane: LocalControlPlane, tmp_path: Path
) -> None:
    with (
        own_plane.api_client() as api,
        HostileServer(PaddedAccount()) as endpoint,
        running_operator(own_plane.kubeconfig, tmp_path / "operator.log") as operator,
        memory_limited(operator.pid, LIMIT) as cgroup,
    ):
        mirror = Mirror(api, "default")
        mirror.create_secret("src-credentials", EGP_KEY)
        mirror.create_source("src", endpoint.url, accountID=EGP_ACCOUNT, pageSize=PER_PAGE)

        source = eventually(
            lambda: (
                (s := mirror.source("src")).get("status", {}).get("models", {}).get("total")
                == PAGES * PER_PAGE
                and s
            ),
            timeout=600,
            interval=2,
            what="the padded account to be mirrored",
        )

        assert operator.alive(), "the operator was killed"
        peak = peak_rss(operator.pid)
        where = f"in a {LIMIT // MIB} MiB cgroup" if cgroup else "without a cgroup"
        print(f"MEMORY padded listing of {PAGES}x{PER_PAGE}: peak RSS {peak / MIB:.0f} MiB {where}")
        assert peak < LIMIT
        synced = next(c for c in source["status"]["conditions"] if c["type"] == "Synced")
        assert synced["status"] == "True"
        sample = mirror.models()[0]["status"]
        assert sample["extraFields"]["padding"][:2] == [{}, {}]  # mirrored, within its bound
        if cgroup is not None:
            assert int((cgroup / "memory.max_usage_in_bytes").read_text()) <= LIMIT
