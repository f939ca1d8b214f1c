"""``lmops render FILE``: print every object the operator would create for a LanguageModel, as YAML.

A dry run like ``helm template``: the same planner the operator runs, fed an empty cluster, so what it
prints is what the first reconcile applies (owner references aside: a file has no uid yet).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from lmops_operator.api import KIND, InvalidLanguageModel, load_language_model
from lmops_operator.k8s.yamlout import dump_all
from lmops_operator.planning.decide import PolicyViolation
from lmops_operator.planning.plan import Observed, plan, utcnow
from lmops_operator.settings import Settings, SettingsError


def render_documents(text: str, settings: Settings, namespace: str | None = None) -> list[dict[str, Any]]:
    """Objects for every LanguageModel document in ``text`` (other kinds are ignored)."""
    objects: list[dict[str, Any]] = []
    for doc in yaml.safe_load_all(text):
        if not isinstance(doc, dict) or doc.get("kind", KIND) != KIND:
            continue
        if namespace is not None:
            doc = {**doc, "metadata": {**(doc.get("metadata") or {}), "namespace": namespace}}
        lm = load_language_model(doc)
        objects.extend(plan(lm, Observed(now=utcnow()), settings).objects)
    return objects


def _run(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env()
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
        objects = render_documents(text, settings, args.namespace)
    except (OSError, yaml.YAMLError, InvalidLanguageModel, PolicyViolation, SettingsError) as exc:
        print(f"lmops render: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(dump_all(objects))
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "render", help="print the objects the operator would create for a LanguageModel file"
    )
    parser.add_argument("file", help="LanguageModel YAML file ('-' for stdin)")
    parser.add_argument("-n", "--namespace", help="namespace to render into (default: the file's)")
    parser.set_defaults(handler=_run)
