"""The `fake-egp` command: the local EGP server on a port, for the demo, benchmarks and poking
around by hand (its admin API is described in the README)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from egp_testbench.fake_egp.generator import generate_models
from egp_testbench.fake_egp.server import load_models_file, serve_forever


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fake-egp", description="Serve a local EGP API (GET /v5/models) for tests and demos."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--api-key", required=True, help="the key clients must send as x-api-key")
    parser.add_argument("--account-id", default="acct-demo")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--models", type=int, default=25, help="how many models to generate")
    source.add_argument(
        "--models-file",
        type=Path,
        help='a JSON list of models, or a {"items": [...]} page, served instead',
    )
    parser.add_argument("--seed", type=int, default=0, help="the same seed gives the same models")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
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
    except (ValueError, OSError) as error:
        print(f"fake-egp: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
