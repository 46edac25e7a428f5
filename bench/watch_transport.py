"""`python -m bench.watch_transport`: what a thousand Secret watches by name cost, over HTTP/1.1
(aiohttp, the operator's client today) and over HTTP/2 (httpx with h2), side by side.

    .venv/bin/python -m bench.watch_transport --watches 1000 --namespaces 100 --settle 60

The design (shared/design.md, "Credentials, and the API server's load") watches each Secret a
source references with the field selector `metadata.name=<name>`; at 1,000 sources that is
1,000 watches. HTTP/1.1 holds a TCP connection (and a TLS session) per watch; HTTP/2 carries up
to the API server's `--http2-max-streams-per-connection` (1,000 by default) on one. Each
transport runs in a process of its own against one local control plane: it opens every watch,
waits `--settle` seconds, then rotates `--rotations` Secrets one after the other and times each
MODIFIED event. Reported: the client's RSS, CPU while settled and TCP connections, the API
server's RSS and CPU, and the rotation latency; then the ratios. It measures, it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import httpx
import yaml

from egp_testbench.cluster import LocalControlPlane, find_bin_dir

MB = 1024 * 1024
TRANSPORTS = ("aiohttp-http1", "httpx-http2")


def _rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tcp_connections() -> int:
    """The process's open sockets (the listing's own descriptor may be gone when read)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            continue
    return count


def _secret_names(watches: int, namespaces: int) -> list[tuple[str, str]]:
    return [(f"bench-{i % namespaces}", f"key-{i}") for i in range(watches)]


# ---- the client: one transport, in a process of its own ----------------------------------------


class Client:
    """The admin's kubeconfig: server, CA and bearer token."""

    def __init__(self, kubeconfig: Path) -> None:
        config = yaml.safe_load(kubeconfig.read_text())
        cluster = config["clusters"][0]["cluster"]
        self.server = str(cluster["server"])
        self.context = ssl.create_default_context(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
        )
        self.headers = {"Authorization": f"Bearer {config['users'][0]['user']['token']}"}

    def watch_url(self, namespace: str, name: str) -> str:
        selector = quote(f"metadata.name={name}")
        return (
            f"{self.server}/api/v1/namespaces/{namespace}/secrets?fieldSelector={selector}"
            "&watch=1&allowWatchBookmarks=true&timeoutSeconds=1800"
        )

    def secret_url(self, namespace: str, name: str) -> str:
        return f"{self.server}/api/v1/namespaces/{namespace}/secrets/{name}"


async def _aiohttp_events(
    session: aiohttp.ClientSession, client: Client, url: str
) -> AsyncIterator[dict[str, Any]]:
    async with session.get(url, headers=client.headers) as response:
        async for line in response.content:
            yield json.loads(line)


async def _httpx_events(
    http: httpx.AsyncClient, client: Client, url: str
) -> AsyncIterator[dict[str, Any]]:
    async with http.stream("GET", url, headers=client.headers) as response:
        async for line in response.aiter_lines():
            if line:
                yield json.loads(line)


async def _run_client(args: argparse.Namespace) -> dict[str, Any]:
    client = Client(Path(args.kubeconfig))
    names = _secret_names(args.watches, args.namespaces)
    established = asyncio.Semaphore(0)
    modified: dict[str, asyncio.Event] = {name: asyncio.Event() for _, name in names}
    async with (
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ssl=client.context),
            timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
        ) as session,
        httpx.AsyncClient(
            http2=True,
            verify=client.context,
            timeout=httpx.Timeout(10.0, read=None),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=None),
        ) as http,
    ):

        async def watch(namespace: str, name: str) -> None:
            url = client.watch_url(namespace, name)
            events = (
                _aiohttp_events(session, client, url)
                if args.transport == "aiohttp-http1"
                else _httpx_events(http, client, url)
            )
            first = True
            async for event in events:
                if first:
                    established.release()
                    first = False
                elif event["type"] == "MODIFIED":
                    modified[name].set()

        started = time.monotonic()
        cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        tasks = [asyncio.create_task(watch(ns, name)) for ns, name in names]
        for _ in names:
            await established.acquire()
        open_seconds = time.monotonic() - started
        print("ESTABLISHED", flush=True)
        settled_from = resource.getrusage(resource.RUSAGE_SELF)
        await asyncio.sleep(args.settle)
        settled_to = resource.getrusage(resource.RUSAGE_SELF)
        connections = _tcp_connections()
        rss = _rss_mb()
        latencies = []
        for namespace, name in names[: args.rotations]:
            modified[name].clear()
            sent = time.monotonic()
            answer = await http.patch(
                client.secret_url(namespace, name),
                headers={**client.headers, "Content-Type": "application/merge-patch+json"},
                content=json.dumps({"stringData": {"apiKey": f"rotated-{sent}"}}),
            )
            answer.raise_for_status()
            await asyncio.wait_for(modified[name].wait(), timeout=30)
            latencies.append(time.monotonic() - sent)
        for task in tasks:
            task.cancel()
    return {
        "transport": args.transport,
        "open_seconds": open_seconds,
        "open_cpu_seconds": (settled_from.ru_utime + settled_from.ru_stime)
        - (cpu_before.ru_utime + cpu_before.ru_stime),
        "settled_cpu_share": (
            (settled_to.ru_utime + settled_to.ru_stime)
            - (settled_from.ru_utime + settled_from.ru_stime)
        )
        / args.settle,
        "client_rss_mb": rss,
        "client_sockets": connections,
        "rotation_ms_median": statistics.median(latencies) * 1000 if latencies else None,
        "rotation_ms_max": max(latencies) * 1000 if latencies else None,
    }


# ---- the parent: a control plane, the Secrets, each transport in turn --------------------------


def _create_secrets(cluster: LocalControlPlane, watches: int, namespaces: int) -> None:
    from kubernetes import client

    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        for i in range(namespaces):
            core.create_namespace(
                client.V1Namespace(metadata=client.V1ObjectMeta(name=f"bench-{i}"))
            )
        for namespace, name in _secret_names(watches, namespaces):
            core.create_namespaced_secret(
                namespace,
                client.V1Secret(
                    metadata=client.V1ObjectMeta(name=name), string_data={"apiKey": "k"}
                ),
            )


def _measure(
    cluster: LocalControlPlane, args: argparse.Namespace, transport: str
) -> dict[str, Any]:
    apiserver = cluster.pids["kube-apiserver"]
    rss_before = _rss_mb(apiserver)
    child = subprocess.Popen(  # noqa: S603
        [
            sys.executable, "-m", "bench.watch_transport", "--client", transport,
            "--kubeconfig", str(cluster.kubeconfig), "--watches", str(args.watches),
            "--namespaces", str(args.namespaces), "--settle", str(args.settle),
            "--rotations", str(args.rotations),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ESTABLISHED"
    cpu_from = _cpu_seconds(apiserver)
    time.sleep(args.settle)
    cpu_to = _cpu_seconds(apiserver)
    apiserver_rss = _rss_mb(apiserver)
    result: dict[str, Any] = json.loads(child.stdout.read())
    child.wait()
    result["apiserver_rss_mb_added"] = apiserver_rss - rss_before
    result["apiserver_settled_cpu_share"] = (cpu_to - cpu_from) / args.settle
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.watch_transport")
    parser.add_argument("--watches", type=int, default=1000)
    parser.add_argument("--namespaces", type=int, default=100)
    parser.add_argument("--settle", type=float, default=60.0)
    parser.add_argument("--rotations", type=int, default=20)
    parser.add_argument("--transports", default=",".join(TRANSPORTS), help="which, in order")
    parser.add_argument("--client", dest="transport", choices=TRANSPORTS)
    parser.add_argument("--kubeconfig")
    args = parser.parse_args(argv)
    if args.transport:
        print(json.dumps(asyncio.run(_run_client(args))), flush=True)
        return 0
    with (
        tempfile.TemporaryDirectory(prefix="egp-watch-bench-") as work,
        LocalControlPlane(find_bin_dir(), Path(work) / "cluster") as cluster,
    ):
        _create_secrets(cluster, args.watches, args.namespaces)
        chosen = args.transports.split(",")
        results = [_measure(cluster, args, transport) for transport in chosen]
    print(json.dumps(results, indent=2))
    if len(results) != 2:
        return 0
    first, second = results
    for key in first:
        if isinstance(first[key], float) and isinstance(second[key], float) and second[key]:
            print(f"{key}: {first[key]:.3g} vs {second[key]:.3g} ({first[key] / second[key]:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
