"""``lmops rollout``: the pure parts (undo's spec restoration, revision choice, status text, the end of -w),
and the commands against a fake API client that records what they send."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from lmops_operator.api.annotations import ABORT, PROMOTE, RESTART, Controls, consumed_patch, read_controls
from lmops_operator.api.models import LanguageModelSpec
from lmops_operator.api.status import AnalysisResult, LanguageModelStatus, RolloutStatus
from lmops_operator.commands import rollout as cli
from lmops_operator.commands import rollout_view as view
from lmops_operator.planning.revision import revision_data, revision_name
from tests.unit.rollout_helpers import T0

BASE = {"model": {"source": "builtin://tiny"}, "runtime": {"gpus": 0}}
VARIANTS = [
    {"model": {"source": "file:///models/a", "dtype": "float32", "maxSequenceLength": 256}},
    {"model": {"source": "builtin://tiny", "generation": {"strategy": "sample", "topK": 5, "topP": 0.9}}},
    {"model": {"source": "builtin://tiny", "generation": {"strategy": "beam", "numBeams": 3}}},
    {"model": {"source": "builtin://tiny", "task": "classify", "labels": ["x", "y"]}},
    {
        "model": {"source": "builtin://tiny", "revision": "v2", "quantization": "int8"},
        "serving": {"maxBatchSize": 4, "batchWaitTimeoutMilliseconds": 25},
        "runtime": {"gpus": 0, "cpu": "3"},
    },
]


@pytest.mark.parametrize("old", VARIANTS)
@pytest.mark.parametrize("new", VARIANTS)
def test_undo_patch_restores_the_exact_revision(old: dict[str, Any], new: dict[str, Any]) -> None:
    old_spec = LanguageModelSpec.model_validate({**BASE, **old})
    current = {**BASE, **new, "autoscaling": {"maxReplicas": 3}}
    patch = view.spec_patch_from_revision(revision_data(old_spec))
    restored = LanguageModelSpec.model_validate(view.apply_merge_patch(current, patch["spec"]))
    assert revision_name(restored) == revision_name(old_spec)
    assert restored.autoscaling.max_replicas == 3  # fields outside the revision are left alone


def test_pick_revision() -> None:
    revs = [
        {"metadata": {"labels": {"lmops.io/revision": name}}, "revision": n}
        for n, name in ((1, "r1"), (2, "r2"), (3, "r3"))
    ]
    assert view.pick_revision(revs, "r3", None)["revision"] == 2
    assert view.pick_revision(revs, "r2", None)["revision"] == 3
    assert view.pick_revision(revs, "r3", 1)["revision"] == 1
    with pytest.raises(view.RolloutError):
        view.pick_revision(revs, "r3", 9)
    with pytest.raises(view.RolloutError):
        view.pick_revision(revs[:1], "r1", None)


def test_describe_and_finished() -> None:
    spec = LanguageModelSpec.model_validate(BASE)
    status = LanguageModelStatus(
        phase="Progressing",
        stable_revision="a",
        canary_revision="b",
        canary_weight=10,
        rollout=RolloutStatus(revision="b", state="Progressing", step=0, failed_checks=1),
        last_analysis=AnalysisResult(
            revision="b",
            requests=30,
            error_rate=0.1,
            verdict="Fail",
            message="too many",
            time=T0,
            max_error_rate=0.05,
        ),
    )
    text = "\n".join(view.describe("m", spec, status))
    assert "canary:  b at 10%" in text and "step 1/2" in text and "failed checks 1/2" in text
    assert "Fail for b: 30 requests, 10.0% errors" in text and "maxErrorRate 0.05" in text
    assert view.finished(spec, status) == (False, False)
    aborted = status.model_copy(
        update={"rollout": RolloutStatus(revision="b", state="Aborted"), "canary_revision": None}
    )
    assert view.finished(spec, aborted) == (True, False)
    done = LanguageModelStatus(phase="Ready", stable_revision="b")
    assert view.finished(spec, done) == (True, True)


def test_annotations_round_trip() -> None:
    assert read_controls({PROMOTE: "x"}) == Controls(promote=True)
    assert read_controls({PROMOTE: "x", ABORT: "y"}) == Controls(abort=True)
    assert read_controls({RESTART: ""}) == Controls(restart=True)
    assert read_controls(None) == Controls()
    assert consumed_patch({PROMOTE: "x", "other": "1"}) == {"metadata": {"annotations": {PROMOTE: None}}}
    assert consumed_patch({"other": "1"}) is None


class FakeKube:
    def __init__(self, objects: dict[str, dict[str, Any]], revisions: list[dict[str, Any]]) -> None:
        self.objects = objects
        self.revisions = revisions
        self.patches: list[tuple[str, dict[str, Any]]] = []

    def get(self, path: str) -> dict[str, Any] | None:
        return self.objects.get(path)

    def list(self, path: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        assert label_selector == "lmops.io/model=m"
        return self.revisions

    def merge_patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        self.patches.append((path, patch))
        return {}


PATH = "/apis/lmops.io/v1alpha1/namespaces/ns/languagemodels/m"


def _args(**kw: Any) -> argparse.Namespace:
    return argparse.Namespace(name="m", namespace="ns", kubeconfig=None, **kw)


def test_commands_send_annotations_and_undo_patch(monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    old = LanguageModelSpec.model_validate({**BASE, "model": {"source": "file:///old"}})
    new = {**BASE, "model": {"source": "file:///new"}}
    revisions = [
        {
            "metadata": {"labels": {"lmops.io/revision": revision_name(old)}, "creationTimestamp": "t1"},
            "revision": 1,
            "data": revision_data(old),
        },
        {
            "metadata": {
                "labels": {"lmops.io/revision": revision_name(LanguageModelSpec.model_validate(new))}
            },
            "revision": 2,
            "data": revision_data(LanguageModelSpec.model_validate(new)),
        },
    ]
    kube = FakeKube({PATH: {"spec": new, "status": {"stableRevision": revision_name(old)}}}, revisions)
    monkeypatch.setattr(cli, "_connect", lambda args: (kube, "ns"))
    assert cli._control(PROMOTE, "promote")(_args()) == 0
    assert kube.patches[-1][0] == PATH and PROMOTE in kube.patches[-1][1]["metadata"]["annotations"]
    assert cli.cmd_undo(_args(to_revision=None)) == 0
    restored = view.apply_merge_patch(new, kube.patches[-1][1]["spec"])
    assert revision_name(LanguageModelSpec.model_validate(restored)) == revision_name(old)
    assert cli.cmd_history(_args()) == 0
    out = capsys.readouterr().out
    assert "stable" in out and "file:///old" in out
    assert cli._guarded(cli.cmd_status)(_args(watch=False, timeout=1.0)) == 0
    missing = argparse.Namespace(name="nope", namespace="ns", kubeconfig=None, watch=False, timeout=1.0)
    assert cli._guarded(cli.cmd_status)(missing) == 1
