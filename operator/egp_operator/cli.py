"""The `egp-operator` command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path


def _fake_egp(args: argparse.Namespace) -> int:
    # Imported here: the server's dependencies (FastAPI, uvicorn) are an optional extra.
    from egp_operator.testing.fake_egp.generator import generate_models
    from egp_operator.testing.fake_egp.server import load_models_file, serve_forever

    models = (
        load_models_file(args.models_file)
        if args.models_file
        else generate_models(args.models, args.seed)
    )
    serve_forever(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        account_id=args.account_id,
        models=models,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="egp-operator",
        description="Mirror the models of a Scale EGP account into EGPModel custom resources.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    fake = commands.add_parser(
        "fake-egp", help="serve a local EGP API (GET /v5/models) for tests and demos"
    )
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=int, default=8080)
    fake.add_argument("--api-key", required=True, help="the key clients must send as x-api-key")
    fake.add_argument("--account-id", default="acct-demo")
    source = fake.add_mutually_exclusive_group()
    source.add_argument("--models", type=int, default=25, help="how many models to generate")
    source.add_argument(
        "--models-file",
        type=Path,
        help='a JSON list of models, or a {"items": [...]} page, served instead',
    )
    fake.add_argument("--seed", type=int, default=0, help="the same seed gives the same models")
    fake.set_defaults(handler=_fake_egp)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except (ValueError, OSError) as error:
        print(f"egp-operator {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
