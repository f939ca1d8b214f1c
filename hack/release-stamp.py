#!/usr/bin/env python3
"""Stamp a release's version and registry into the files the release builds from (stdlib only: CI runs it
with the runner's python3 before anything is installed).

Usage: release-stamp.py REF OWNER (stamps the checkout this script is in)

REF ($GITHUB_REF), a tag refs/tags/vMAJOR.MINOR.PATCH, gives the one version that becomes the Python package
version (the operator's built-in runtime image tag is read from it), both charts' version and appVersion (the
chart's operator image tag), and the image tags the release workflow pushes. OWNER (the GitHub repository
owner) gives the registry, ghcr.io/<owner>: when it is not lmops_operator.images.REGISTRY (a fork), the
chart's values are pointed at the fork's images, so a published chart never names an image its release did not
push.

Writes version=, registry= and charts= to $GITHUB_OUTPUT when set, and prints them.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "operator"))
from lmops_operator import images  # noqa: E402  (the path above makes the operator package importable)

# Only plain MAJOR.MINOR.PATCH reads back unchanged as a Helm chart version, an image tag and a Python
# package version (PEP 440 would rewrite 1.2.3-rc.1 to 1.2.3rc1, and the operator's default image with it).
TAG_REF = re.compile(r"refs/tags/v(?P<version>(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*))")


def _sub(path: Path, pattern: str, replacement: str) -> None:
    """Replace the one line ``pattern`` matches; any other count means the file changed shape: fail loudly."""
    text = path.read_text()
    new, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    if count != 1:
        raise SystemExit(f"{path}: expected one match of {pattern!r}, found {count}")
    path.write_text(new)


def stamp(root: Path, version: str, registry: str) -> None:
    """Write ``version`` and ``registry`` into pyproject.toml and the charts under ``root``."""
    _sub(root / "pyproject.toml", r'^version = "[^"]*"$', f'version = "{version}"')
    for chart in images.CHARTS:
        chart_yaml = root / "charts" / chart / "Chart.yaml"
        _sub(chart_yaml, r"^version: .*$", f"version: {version}")
        _sub(chart_yaml, r"^appVersion: .*$", f'appVersion: "{version}"')
    _sub(root / "charts/lmops-stack/Chart.yaml", r"^(  - name: lmops\n    version: ).*$", rf"\g<1>{version}")
    if registry != images.REGISTRY:
        values = root / "charts/lmops/values.yaml"
        ours, theirs = images.repository(images.OPERATOR), images.repository(images.OPERATOR, registry)
        _sub(values, rf"^(  repository: ){re.escape(ours)}$", rf"\g<1>{theirs}")
        runtime = images.runtime_image(version, registry=registry)
        _sub(values, r'^(  defaultRuntimeImage: )""$', rf"\g<1>{runtime}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ref", help="the git ref, refs/tags/vMAJOR.MINOR.PATCH")
    parser.add_argument("owner", help="the GitHub repository owner; images go to ghcr.io/<owner>")
    args = parser.parse_args(argv)
    match = TAG_REF.fullmatch(args.ref)
    if not match:
        message = f"a release runs from a tag vMAJOR.MINOR.PATCH (refs/tags/v1.2.3), got {args.ref!r}"
        print(message, file=sys.stderr)
        return 2
    version, registry = match["version"], f"ghcr.io/{args.owner.lower()}"
    stamp(REPO, version, registry)
    outputs = f"version={version}\nregistry={registry}\ncharts={images.chart_repository(registry)}\n"
    print(outputs, end="")
    if os.environ.get("GITHUB_OUTPUT"):
        with open(os.environ["GITHUB_OUTPUT"], "a") as out:
            out.write(outputs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
