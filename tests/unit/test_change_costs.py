"""Every spec field declares what changing it costs, and something reads it as its cost says.

A field with no change cost (on itself or a section above it) fails; so does one that nothing reads:
a revision field must land in the revision data where the runtime's contract models accept it, and any
other field must be read by name somewhere in the operator outside ``api/``.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from lmops_operator.api import LanguageModelSpec
from lmops_operator.api.changes import CHANGE_KEY, EXPLAIN, Change, get_path, leaves, submodel
from lmops_operator.api.crd import structural_schema
from lmops_operator.commands.rollout_view import apply_merge_patch, spec_patch_from_revision
from lmops_operator.planning.revision import REVISION_FIELDS, revision_data, revision_name

OPERATOR = Path(__file__).resolve().parents[2] / "operator" / "lmops_operator"
ALL_FIELDS = list(leaves(LanguageModelSpec))
# A spec that sets every optional revision field, so each one has a value to land in the revision data.
FULL = {
    "model": {
        "source": "hf://org/m",
        "revision": "v2",
        "task": "classify",
        "labels": ["neg", "pos"],
        "maxSequenceLength": 128,
        "trustRemoteCode": True,
        "dtype": "float16",
        "generation": {"strategy": "sample", "topK": 5, "topP": 0.9, "temperature": 0.5},
    },
    "runtime": {"gpus": 2, "cpu": "3", "memory": "6Gi"},
    "serving": {"maxBatchSize": 4, "batchWaitTimeoutMilliseconds": 25},
}


def _attribute_reads() -> set[str]:
    names: set[str] = set()
    for path in OPERATOR.rglob("*.py"):
        if path.parent.name == "api":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                names.add(node.attr)
    return names


def test_every_spec_field_declares_its_change_cost() -> None:
    untagged = [f.dotted for f in ALL_FIELDS if f.change is None]
    assert untagged == []
    assert {f.change for f in ALL_FIELDS} == set(Change)


def test_revision_fields_say_where_they_are_stored_and_nothing_else_does() -> None:
    for tagged in ALL_FIELDS:
        assert (tagged.stored_as is not None) == (tagged.change is Change.REVISION), tagged.dotted


def test_every_revision_field_lands_in_the_revision_data() -> None:
    """The reader of a revision field is the runtime: its contract models hold every stored path."""
    spec = LanguageModelSpec.model_validate(FULL)
    data = revision_data(spec)
    beam = revision_data(LanguageModelSpec.model_validate({"model": {"source": "hf://o/m", "generation": {
        "strategy": "beam", "numBeams": 3}, "engine": "transformers"}}))  # fmt: skip
    missing = [
        f.dotted for f in REVISION_FIELDS if get_path(data, f.stored_as or "") is None
        and get_path(beam, f.stored_as or "") is None
    ]  # fmt: skip
    assert missing == []


def _tag_owner(path: tuple[str, ...]) -> str:
    """The name of the field that declares the change cost ``path`` has: itself, or the section above
    it whose value the operator passes on whole (tolerations, for one, are copied onto the pods)."""
    model: Any = LanguageModelSpec
    owner = path[-1]
    for name in path:
        info = model.model_fields[name]
        if isinstance(info.json_schema_extra, dict) and CHANGE_KEY in info.json_schema_extra:
            owner = name
        model = submodel(info.annotation)
    return owner


def test_every_other_field_is_read_by_the_operator() -> None:
    """Read by name outside api/: the field itself, or the section that declares its cost."""
    reads = _attribute_reads()
    unread = [
        f.dotted
        for f in ALL_FIELDS
        if f.change is not Change.REVISION and f.path[-1] not in reads and _tag_owner(f.path) not in reads
    ]
    assert unread == []


@pytest.mark.parametrize(
    "spec", [FULL, {"model": {"source": "hf://o/m", "generation": {"strategy": "beam"}}}]
)
def test_undo_inverts_the_revision_data(spec: dict[str, Any]) -> None:
    """The inverse derived from the same tags gives back a spec of the same revision."""
    original = LanguageModelSpec.model_validate(spec)
    moved = {"model": {"source": "builtin://tiny"}, "autoscaling": {"maxReplicas": 2}}
    patch = spec_patch_from_revision(revision_data(original))["spec"]
    restored = LanguageModelSpec.model_validate(apply_merge_patch(moved, patch))
    assert revision_name(restored) == revision_name(original)
    assert restored.autoscaling.max_replicas == 2


def test_kubectl_explain_shows_each_change_cost() -> None:
    """The CRD's description of every tagged field (or of its section) ends with its cost in words."""
    schema = structural_schema()["properties"]["spec"]
    for tagged in ALL_FIELDS:
        node, texts = schema, []
        for part in tagged.alias_path:
            node = node["properties"][part] if "properties" in node else node["items"]["properties"][part]
            texts.append(node.get("description", ""))
        assert any(text.endswith(EXPLAIN[tagged.change]) for text in texts if tagged.change), tagged.dotted
