"""The generated CRD: structural, documented, defaulted like the models, in sync with the files on disk."""

from __future__ import annotations

import argparse
import copy
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args, get_origin

import jsonschema
import pytest
import yaml
from pydantic import BaseModel

from lmops_operator.api import LanguageModel
from lmops_operator.api.crd import CRD_FILENAME, PRINTER_COLUMNS, build_crd, render_crd, structural_schema
from lmops_operator.commands import crds as crds_command
from tests.support.languagemodel_cases import INVALID_CASES

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))

# Keys a structural schema node may carry (apiextensions.k8s.io/v1 JSONSchemaProps that lmops uses).
ALLOWED_KEYS = {
    "type", "format", "description", "enum", "default", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "minLength", "maxLength", "minItems", "maxItems", "pattern", "required", "properties",
    "additionalProperties", "items", "x-kubernetes-validations", "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys", "x-kubernetes-preserve-unknown-fields",
}  # fmt: skip
TYPES = {"object", "array", "string", "integer", "number", "boolean"}


def structural_problems(node: Any, path: str = "") -> list[str]:
    """Why ``node`` is not a structural schema (apiextensions rules plus what the API server forbids)."""
    if not isinstance(node, dict):
        return [f"{path or '<root>'}: not a schema object"]
    where = path or "<root>"
    problems = [f"{where}: {key} is not allowed" for key in node if key not in ALLOWED_KEYS]
    kind = node.get("type")
    if kind not in TYPES and not node.get("x-kubernetes-preserve-unknown-fields"):
        problems.append(f"{where}: missing or unknown type {kind!r}")
    if "properties" in node and "additionalProperties" in node:
        problems.append(f"{where}: properties and additionalProperties are mutually exclusive")
    if kind == "array" and "items" not in node:
        problems.append(f"{where}: array without items")
    if kind != "object" and ("properties" in node or "additionalProperties" in node):
        problems.append(f"{where}: properties on a {kind}")
    for name in node.get("required", []):
        if name not in node.get("properties", {}):
            problems.append(f"{where}: required {name} is not a property")
    if node.get("x-kubernetes-list-type") == "map":
        item = node.get("items", {})
        for key in node.get("x-kubernetes-list-map-keys", []):
            if key not in item.get("required", []) and "default" not in item.get("properties", {}).get(
                key, {}
            ):
                problems.append(f"{where}: list map key {key} must be required or defaulted")
    for rule in node.get("x-kubernetes-validations", []):
        if not rule.get("rule") or not rule.get("message"):
            problems.append(f"{where}: CEL rule without rule or message: {rule}")
    for name, sub in node.get("properties", {}).items():
        problems += structural_problems(sub, f"{path}.{name}")
    if isinstance(node.get("additionalProperties"), dict):
        problems += structural_problems(node["additionalProperties"], f"{path}.*")
    if "items" in node:
        problems += structural_problems(node["items"], f"{path}[]")
    return problems


def test_schema_is_structural() -> None:
    schema = structural_schema()
    assert structural_problems(schema) == []
    # metadata may not be constrained beyond name/generateName; lmops leaves it to the API server.
    assert schema["properties"]["metadata"] == {"type": "object"}


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ({"$ref": "#/x"}, "$ref is not allowed"),
        ({"anyOf": [{"type": "string"}, {"type": "null"}]}, "anyOf is not allowed"),
        ({"description": "untyped"}, "missing or unknown type"),
        ({"type": "array"}, "array without items"),
        (
            {"type": "object", "properties": {}, "additionalProperties": {"type": "string"}},
            "mutually exclusive",
        ),
        ({"type": "string", "uniqueItems": True}, "uniqueItems is not allowed"),
        (
            {"type": "object", "properties": {"a": {"type": "string", "title": "A"}}},
            ".a: title is not allowed",
        ),
    ],
)
def test_structural_checker_catches(bad: dict[str, Any], problem: str) -> None:
    assert any(problem in p for p in structural_problems(bad)), structural_problems(bad)


def _models_under(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_under(arg)]


def _walk_fields(model: type[BaseModel], node: dict[str, Any], path: str, seen: list[str]) -> None:
    for name, field in model.model_fields.items():
        alias = field.alias or name
        where = f"{path}.{alias}"
        assert alias in node["properties"], f"{where} missing from the schema"
        sub = node["properties"][alias]
        seen.append(where)
        if model is not LanguageModel or alias in ("spec", "status"):
            assert sub.get("description"), f"{where} has no description"
        if model is LanguageModel and alias == "metadata":
            continue
        for inner in _models_under(field.annotation):
            target = sub["items"] if sub["type"] == "array" else sub
            _walk_fields(inner, target, where, seen)
        if get_origin(field.annotation) is list or sub["type"] == "array":
            assert "items" in sub


def test_every_model_field_is_in_the_schema_with_a_description() -> None:
    seen: list[str] = []
    _walk_fields(LanguageModel, structural_schema(), "", seen)
    assert ".spec.model.source" in seen
    assert ".status.conditions.lastTransitionTime" in seen
    assert len(seen) > 100


def test_crd_metadata() -> None:
    crd = build_crd()
    spec = crd["spec"]
    assert crd["metadata"]["name"] == "languagemodels.lmops.io"
    assert spec["group"] == "lmops.io" and spec["scope"] == "Namespaced"
    assert spec["names"]["shortNames"] == ["lm"] and spec["names"]["categories"] == ["lmops"]
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    conditions = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]


def _schema_at(schema: dict[str, Any], json_path: str) -> dict[str, Any] | None:
    node: dict[str, Any] | None = schema
    for part in re.sub(r"\[[^\]]*\]", "", json_path).strip(".").split("."):
        if node is None:
            return None
        if node.get("type") == "array":
            node = node["items"]
        node = node.get("properties", {}).get(part)
    return node


def test_printer_columns_point_at_schema_fields() -> None:
    schema = structural_schema()
    names = [c["name"] for c in PRINTER_COLUMNS]
    assert names == ["Source", "Task", "Phase", "Stable", "Canary", "Weight", "Replicas", "Ready", "Age"]
    for column in PRINTER_COLUMNS:
        if column["jsonPath"].startswith(".metadata"):
            continue
        assert _schema_at(schema, column["jsonPath"]) is not None, column


def _defaults_valid(node: dict[str, Any], path: str) -> None:
    if "default" in node:
        jsonschema.Draft4Validator(node).validate(node["default"])
    for name, sub in node.get("properties", {}).items():
        _defaults_valid(sub, f"{path}.{name}")
    if "items" in node:
        _defaults_valid(node["items"], f"{path}[]")


def test_defaults_satisfy_their_own_schema() -> None:
    _defaults_valid(structural_schema(), "")


def apply_defaults(node: dict[str, Any], value: Any) -> Any:
    """Structural defaulting as the API server does it: top-down, a defaulted object gets its own defaults."""
    if node.get("type") == "object" and isinstance(value, dict):
        out = dict(value)
        for name, sub in node.get("properties", {}).items():
            if name not in out and "default" in sub:
                out[name] = copy.deepcopy(sub["default"])
            if name in out:
                out[name] = apply_defaults(sub, out[name])
        return out
    if node.get("type") == "array" and isinstance(value, list):
        return [apply_defaults(node["items"], item) for item in value]
    return value


def test_schema_defaults_match_model_defaults() -> None:
    """An object defaulted by the API server means what the same object parsed in local mode means."""
    spec_schema = structural_schema()["properties"]["spec"]
    for raw in ({"model": {"source": "builtin://tiny"}}, {"model": {"source": "hf://gpt2"}, "rollout": {}}):
        from_server = apply_defaults(spec_schema, raw)
        from_models = LanguageModel.model_validate({"metadata": {"name": "x"}, "spec": raw}).spec.model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
        assert from_server == from_models


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_satisfy_the_structural_schema(path: Path) -> None:
    jsonschema.Draft4Validator(structural_schema()).validate(yaml.safe_load(path.read_text()))


def test_every_cel_rule_is_exercised_by_an_invalid_case() -> None:
    messages: list[str] = []

    def collect(node: dict[str, Any]) -> None:
        messages.extend(rule["message"] for rule in node.get("x-kubernetes-validations", []))
        for sub in node.get("properties", {}).values():
            collect(sub)
        if "items" in node:
            collect(node["items"])

    collect(structural_schema())
    covered = [case.message for case in INVALID_CASES if case.cel]
    for message in messages:
        assert any(c in message for c in covered), f"no invalid case for CEL rule: {message}"


def test_files_on_disk_are_current() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lmops_operator.cli", "crds", "--check", "--root", str(REPO)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for directory in crds_command.CRD_DIRS:
        assert (REPO / directory / CRD_FILENAME).read_text() == render_crd()


def test_check_reports_drift_with_a_diff(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def main(argv: list[str]) -> int:
        """The crds subcommand alone, so this test does not depend on every other subcommand importing."""
        parser = argparse.ArgumentParser()
        crds_command.register(parser.add_subparsers())
        args = parser.parse_args(argv)
        result: int = args.handler(args)
        return result

    assert main(["crds", "--check", "--root", str(tmp_path)]) == 1
    assert "missing" in capsys.readouterr().out
    assert main(["crds", "--root", str(tmp_path)]) == 0
    assert main(["crds", "--check", "--root", str(tmp_path)]) == 0
    target = tmp_path / "charts/lmops/crds" / CRD_FILENAME
    target.write_text(target.read_text().replace("shortNames:\n    - lm", "shortNames:\n    - llm"))
    capsys.readouterr()
    assert main(["crds", "--check", "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "-    - llm" in out and "+    - lm" in out
