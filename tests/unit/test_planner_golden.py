"""Golden files: every object (and the first status) the planner produces for each example.

A diff here is a change of what the operator asks of the cluster: review it, then regenerate with
``LMOPS_UPDATE_GOLDEN=1 pytest tests/unit/test_planner_golden.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lmops_operator.api import dump_status
from lmops_operator.k8s.yamlout import dump_all
from lmops_operator.planning.plan import Observed, plan
from tests.unit.planner_helpers import EXAMPLES, SETTINGS, T0, model

GOLDEN = Path(__file__).parent / "golden"


def render(path: Path) -> str:
    import yaml

    lm = model(yaml.safe_load(path.read_text()))
    result = plan(lm, Observed(now=T0), SETTINGS)
    status = {"kind": "LanguageModelStatus", "status": dump_status(result.status), "events": result.events}
    return dump_all([*result.objects, status])


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_golden(path: Path) -> None:
    golden = GOLDEN / f"planner-{path.stem}.yaml"
    text = render(path)
    if os.environ.get("LMOPS_UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    assert golden.exists(), f"{golden} missing: run with LMOPS_UPDATE_GOLDEN=1"
    assert text == golden.read_text()


def test_examples_exist() -> None:
    assert len(EXAMPLES) >= 6


def test_render_command_prints_every_object(capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from lmops_operator.cli import main

    assert main(["render", str(EXAMPLES[0].parent / "gpt2-canary.yaml"), "-n", "team-a"]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["kind"] for d in docs] == [
        "ControllerRevision",
        "RayService",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
    ]
    assert all(d["metadata"]["namespace"] == "team-a" for d in docs)
    assert all("ownerReferences" not in d["metadata"] for d in docs)  # a file has no uid yet
    assert "applications:" in docs[1]["spec"]["serveConfigV2"]


def test_render_command_reports_policy_violation(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from lmops_operator.cli import main

    monkeypatch.setenv("LMOPS_ALLOWED_SOURCES", "s3://")
    assert main(["render", str(EXAMPLES[0].parent / "tiny.yaml")]) == 1
    assert "not allowed" in capsys.readouterr().err
