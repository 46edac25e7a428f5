"""The machine and software versions a result was measured on."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

from bench.procs import load_average


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def _mem_total() -> str:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    return "?"


def _etcd_version(bin_dir: Path) -> str:
    answer = subprocess.run(  # noqa: S603
        [str(bin_dir / "etcd"), "--version"], capture_output=True, text=True, check=False
    )
    first = answer.stdout.splitlines()[0] if answer.stdout else "?"
    return first.removeprefix("etcd Version:").strip()


def _checkout(repo: Path) -> str:
    """The commit measured, and whether the operator's code differed from it."""

    def git(*args: str) -> str:
        answer = subprocess.run(  # noqa: S603
            ["git", "-C", str(repo), *args],  # noqa: S607
            capture_output=True,
            text=True,
            check=False,
        )
        return answer.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "?"
    dirty = git("status", "--porcelain", "--", "operator")
    return f"{commit}" + (" (operator/ has uncommitted changes)" if dirty else "")


def describe_machine(bin_dir: Path, repo: Path) -> dict[str, str]:
    packages = ("kopf", "kubernetes", "httpx", "pydantic", "fastapi", "uvicorn")
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "checkout": _checkout(repo),
        "CPU": f"{os.cpu_count()} cores, {_cpu_model()}",
        "memory": _mem_total(),
        "kernel": platform.release(),
        "Python": platform.python_version(),
        **{package: metadata.version(package) for package in packages},
        "etcd": _etcd_version(bin_dir),
        "load average (1 min) at the start": f"{load_average():.2f}",
    }
