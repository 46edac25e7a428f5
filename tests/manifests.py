"""Reading manifests as the cluster would: what kustomize renders, and what RBAC rules grant."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml


def kustomize(kubectl: Path, root: Path) -> list[dict[str, Any]]:
    """The documents `kubectl kustomize root` renders."""
    built = subprocess.run(
        [str(kubectl), "kustomize", str(root)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert built.returncode == 0, built.stderr
    return [doc for doc in yaml.safe_load_all(built.stdout) if doc]


def grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str, str]]:
    """(apiGroup, resource, verb, resourceName or '') for every combination a rule grants; a
    non-resource URL as ('', '/its/path', verb, '')."""
    return {
        (group, resource, verb, name)
        for rule in rules
        for group in rule.get("apiGroups", [])
        for resource in rule["resources"]
        for verb in rule["verbs"]
        for name in rule.get("resourceNames") or [""]
    } | {
        ("", url, verb, "")
        for rule in rules
        for url in rule.get("nonResourceURLs", [])
        for verb in rule["verbs"]
    }
