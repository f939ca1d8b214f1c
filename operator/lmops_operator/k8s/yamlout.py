"""YAML output for people: multi-line strings (the serve config) as literal blocks, no anchors."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump_all(documents: Iterable[Any]) -> str:
    return yaml.dump_all(
        list(documents), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000
    )
