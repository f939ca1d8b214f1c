"""The ``lmops`` command line; each subcommand lives in ``lmops_operator.commands`` and registers itself."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Modules under lmops_operator.commands; each defines register(subparsers) and sets a ``handler`` default.
# The order is the order `lmops --help` lists them in: a newcomer's first commands first.
COMMAND_MODULES: tuple[str, ...] = ("local", "rollout", "render", "operator", "crds")
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130

DESCRIPTION = """\
Serve language models with Ray Serve: on this machine (`lmops up FILE`, no Kubernetes needed), or on a
Kubernetes cluster through KubeRay, where the lmops operator turns each LanguageModel into a RayService.
New versions roll out as a canary gated on live error rate and latency; `lmops rollout` follows and
steers a rollout on either."""

EPILOG = """\
on this machine:  lmops up examples/tiny.yaml; lmops rollout history tiny; lmops down
on a cluster:     kubectl apply -f FILE (the operator installed: docs/install.md);
                  lmops rollout status NAME -w; lmops render FILE shows what the operator creates
`lmops COMMAND --help` describes each command."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lmops",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"lmops_operator.commands.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. A missing prerequisite (no kubeconfig, no reachable cluster) is one line on stderr
    and exit code 1 (``commands.errors``); Ctrl-C is exit code 130; anything else is a bug and keeps its
    traceback."""
    args = build_parser().parse_args(argv)
    try:
        result: int = args.handler(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        from lmops_operator.commands.errors import explain

        line = explain(exc)
        if line is None:
            raise
        print(f"lmops {args.command}: {line}", file=sys.stderr)
        return EXIT_FAILED
    return result


if __name__ == "__main__":
    sys.exit(main())
