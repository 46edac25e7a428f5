"""Keep charts/egp-operator's derived files equal to their sources, one truth each:

- `crds/`: the CRDs of the repository's crds/ (generated from the pydantic models), which Helm
  installs from the chart's own crds/ folder;
- `files/`: deploy/monitoring/'s alerting rules and Grafana dashboard, which the chart's
  templates embed (Helm reads no file outside the chart);
- `values.schema.json`'s `settings`: the operator's settings (`egp_operator.settings.Settings`),
  by their camelCase names, with their types and bounds; the chart's own values (ports, the
  peering name) are not settings there.

    python -m release.chart           # write them (`make chart`)
    python -m release.chart --check   # exit 1 and name the stale ones (the unit tests do)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Final

from pydantic.alias_generators import to_camel

from egp_operator.settings import Settings

ROOT: Final = Path(__file__).resolve().parents[1]
CHART: Final = ROOT / "charts" / "egp-operator"
#: Settings the chart sets from values of its own, because other objects depend on them too.
CHART_VALUES: Final = {
    "metrics_port": "metrics.port",
    "liveness_port": "healthz.port",
    "peering_name": "peeringName",
}
#: A per-replica setting: one pod template cannot give each replica its own.
PER_REPLICA: Final = frozenset({"priority"})
COPIED: Final = {
    "crds/egp-operator.io_egpsources.yaml": "crds/egp-operator.io_egpsources.yaml",
    "crds/egp-operator.io_egpmodels.yaml": "crds/egp-operator.io_egpmodels.yaml",
    "crds/kopf-peering.yaml": "crds/kopf-peering.yaml",
    "files/prometheusrule.yaml": "deploy/monitoring/prometheusrule.yaml",
    "files/grafana-dashboard.json": "deploy/monitoring/grafana-dashboard.json",
}
_KEYWORDS: Final = (
    "type",
    "enum",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "items",
)


def settings_schema() -> dict[str, Any]:
    """The `settings` value: every operator setting the chart passes through, as JSON schema."""
    properties: dict[str, Any] = {}
    for name, field in Settings.model_json_schema()["properties"].items():
        if name in CHART_VALUES or name in PER_REPLICA:
            continue
        # `str | None`: null is what an unset setting already means, so only the string.
        typed = next((t for t in field.get("anyOf", []) if t.get("type") != "null"), field)
        schema = {key: typed[key] for key in _KEYWORDS if key in typed}
        env, default = f"EGP_OPERATOR_{name.upper()}", json.dumps(field["default"])
        schema["description"] = f"{env} (docs/configuration.md), default {default}"
        properties[to_camel(name)] = schema
    return {
        "type": "object",
        "additionalProperties": False,
        "description": "operator settings by camelCase name; unset ones keep their defaults",
        "properties": properties,
    }


def expected() -> dict[str, str]:
    """The derived files' contents, by path in the chart."""
    files = {target: (ROOT / source).read_text() for target, source in COPIED.items()}
    schema = json.loads((CHART / "values.schema.json").read_text())
    schema["properties"]["settings"] = settings_schema()
    files["values.schema.json"] = json.dumps(schema, indent=2) + "\n"
    return files


def stale() -> list[str]:
    """The derived files that differ from what their sources give."""
    return [
        path
        for path, content in expected().items()
        if not (CHART / path).is_file() or (CHART / path).read_text() != content
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m release.chart", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only say which files are stale")
    args = parser.parse_args(argv)
    if args.check:
        paths = stale()
        for path in paths:
            print(f"charts/egp-operator/{path} is stale: run `make chart`", file=sys.stderr)
        return 1 if paths else 0
    for path, content in expected().items():
        (CHART / path).parent.mkdir(parents=True, exist_ok=True)
        (CHART / path).write_text(content)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
