"""The ``lmops`` command line: each subcommand lives in ``lmops_operator.commands`` and registers itself."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Modules under lmops_operator.commands; each defines register(subparsers) and sets a ``handler`` default.
COMMAND_MODULES: tuple[str, ...] = ("crds", "render", "operator", "rollout", "local")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lmops", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"lmops_operator.commands.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
