"""``lmops crds``: write the generated LanguageModel CRD to ``crds/`` and the Helm chart, or check for drift.

The pydantic models are the only hand-written schema; this command is how the YAML follows them, and
``--check`` (run by the tests and CI) fails when someone edited one without the other.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path
from typing import Any

from lmops_operator.api.crd import CRD_FILENAME, render_crd

# Relative to the repository root: the canonical copy and the one Helm installs.
CRD_DIRS = ("crds", "charts/lmops/crds")


def crd_paths(root: Path) -> list[Path]:
    return [root / d / CRD_FILENAME for d in CRD_DIRS]


def check(root: Path) -> list[str]:
    """Unified diffs (current file -> generated) for every copy that drifted; empty when all match."""
    expected = render_crd()
    diffs: list[str] = []
    for path in crd_paths(root):
        current = path.read_text() if path.exists() else ""
        if current != expected:
            diff = difflib.unified_diff(
                current.splitlines(keepends=True),
                expected.splitlines(keepends=True),
                fromfile=str(path),
                tofile=f"{path} (generated)",
            )
            diffs.append("".join(diff) if current else f"{path}: missing\n")
    return diffs


def write(root: Path) -> list[Path]:
    """Write every copy; returns the paths written."""
    text = render_crd()
    paths = crd_paths(root)
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return paths


def run(args: argparse.Namespace) -> int:
    root = Path(args.root)
    if args.check:
        diffs = check(root)
        for diff in diffs:
            sys.stdout.write(diff)
        if diffs:
            print(
                "CRDs are out of date with operator/lmops_operator/api/models.py: run `lmops crds`.",
                file=sys.stderr,
            )
            return 1
        print("CRDs are up to date.")
        return 0
    for path in write(root):
        print(f"wrote {path}")
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "crds", help="generate the LanguageModel CRD from the API models", description=__doc__
    )
    parser.add_argument("--check", action="store_true", help="fail with a diff if the files drifted")
    parser.add_argument("--root", default=".", help="repository root (default: the current directory)")
    parser.set_defaults(handler=run)
