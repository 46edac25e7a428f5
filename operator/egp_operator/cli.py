"""The `egp-operator` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import socket
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from egp_operator.settings import Settings

#: The settings a command-line flag may give, by field; the environment gives the rest.
FLAGS: dict[str, str] = {"liveness_port": "--liveness-port", "metrics_port": "--metrics-port"}


class SettingsError(ValueError):
    """The settings do not validate: says which flag or variable, and why (exit status 2)."""


def load_settings(flags: Mapping[str, Any] | None = None) -> Settings:
    """The command's settings, built and validated once: the flags given (by field name; None
    for a flag not given) over the `EGP_OPERATOR_*` environment over the defaults."""
    import pydantic

    from egp_operator.settings import Settings

    given = {name: value for name, value in (flags or {}).items() if value is not None}
    try:
        return Settings(**given)
    except pydantic.ValidationError as error:
        raise SettingsError("; ".join(_problem(e, given) for e in error.errors())) from None


def _problem(error: Any, flags: Mapping[str, Any]) -> str:
    """One validation error, named as its user wrote it: the flag, or the variable."""
    field = str(error["loc"][0]) if error["loc"] else ""
    if not field:
        return str(error["msg"])
    where = FLAGS[field] if field in flags else f"EGP_OPERATOR_{field.upper()}"
    return f"{where}: {error['msg']}"


def peering_identity() -> str:
    """This replica's name in the peering objects: the pod's name (`POD_ID`, which the
    Deployment sets from the downward API, as kopf documents), or else the host, the start time
    and a random suffix. kopf's own default begins with the user's name from the password
    database, and the image's numeric user has none: the operator would not start."""
    pod = os.environ.get("POD_ID")
    if pod:
        return pod
    started = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    return f"{socket.gethostname()}/{started}/{secrets.token_hex(4)}"


def _run(args: argparse.Namespace) -> int:
    import kopf

    import egp_operator.handlers  # noqa: F401 - registers the handlers with kopf

    settings = load_settings({field: getattr(args, field) for field in FLAGS})
    log_format = kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL
    kopf.configure(verbose=args.verbose, log_format=log_format, log_prefix=True)
    kopf.run(
        identity=peering_identity(),  # type: ignore[arg-type]  # kopf exports no Identity type
        memo=kopf.Memo(settings=settings, namespaces=tuple(args.namespace or ())),
        clusterwide=not args.namespace,
        namespaces=args.namespace or (),
        liveness_endpoint=f"http://{settings.probe_host}:{settings.liveness_port}/healthz",
    )
    return 0


def _sync_once(args: argparse.Namespace) -> int:
    from egp_operator.sync.once import sync_once

    settings = load_settings()
    return asyncio.run(
        sync_once(
            args.source,
            namespace=args.namespace,
            settings=settings,
            dry_run=args.dry_run,
            out=sys.stdout,
        )
    )


def _crds(args: argparse.Namespace) -> int:
    from egp_operator.resources.crds import render_crds_yaml, write_crds

    if args.output_dir:
        for path in write_crds(args.output_dir):
            print(path)
    else:
        sys.stdout.write(render_crds_yaml())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="egp-operator",
        description="Mirror the models of a Scale EGP account into EGPModel custom resources.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser(
        "run", help="run the operator (cluster from KUBECONFIG or the in-cluster config)"
    )
    run.add_argument(
        "--namespace",
        action="append",
        help="serve only this namespace (repeatable); all namespaces when omitted",
    )
    run.add_argument(
        "--liveness-port", type=int, help="port of /healthz (default 8081, or the setting)"
    )
    run.add_argument(
        "--metrics-port", type=int, help="port of /metrics (default 8080; 0 turns it off)"
    )
    run.add_argument("--verbose", action="store_true")
    run.set_defaults(handler=_run)

    sync = commands.add_parser("sync", help="run one sync cycle of one EGPSource and exit")
    sync.add_argument("source", help="the EGPSource's name")
    sync.add_argument("--namespace", "-n", default="default")
    sync.add_argument(
        "--once", action="store_true", required=True, help="one cycle (the only mode)"
    )
    sync.add_argument(
        "--dry-run", action="store_true", help="print the plan as a table and write nothing"
    )
    sync.set_defaults(handler=_sync_once)

    crds = commands.add_parser("crds", help="print the CustomResourceDefinitions as YAML")
    crds.add_argument("--output-dir", type=Path, help="write one file per CRD there instead")
    crds.set_defaults(handler=_crds)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "run":  # `run` leaves logging to kopf
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
        )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise
    try:
        return int(args.handler(args))
    except (ValueError, OSError) as error:
        print(f"egp-operator {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
