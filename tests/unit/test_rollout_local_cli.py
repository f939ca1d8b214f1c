"""``lmops up``/``down`` without Ray: file reading, errors, printing, through the real CLI."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from lmops_operator.api.status import AnalysisResult, LanguageModelStatus
from lmops_operator.cli import main
from lmops_operator.commands import local as cli
from lmops_runtime.local_env import AUTH_VARIABLES


@pytest.fixture(autouse=True)
def _ray_auth_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """``up`` and ``down`` point Ray's auth variables at their state directory's token; here that must not
    outlive the test, or a later test's Ray would look for a token the test's temporary directory took
    away. (monkeypatch restores only what it changed: setenv records the variable's prior state, delenv
    then clears it for the test.)"""
    for name in AUTH_VARIABLES:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def test_read_manifests_picks_the_model_and_its_configmaps(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: evals}\ndata: {set.jsonl: \'{"text": "a"}\'}\n'
        "---\napiVersion: lmops.io/v1alpha1\nkind: LanguageModel\nmetadata: {name: m}\n"
        "spec: {model: {source: 'builtin://tiny'}}\n"
    )
    model, maps = cli.read_manifests(path)
    assert model["metadata"]["name"] == "m"
    assert maps == {"evals": {"set.jsonl": '{"text": "a"}'}}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("kind: ConfigMap\nmetadata: {name: x}\n", "exactly one LanguageModel"),
        ("a: [", "cannot read YAML"),
    ],
)
def test_bad_files_are_usage_errors(
    tmp_path: Path, text: str, words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["up", str(path)]) == cli.EXIT_USAGE
    assert words in capsys.readouterr().err


def test_missing_file_and_invalid_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", str(tmp_path / "nope.yaml")]) == cli.EXIT_USAGE
    assert "no such file" in capsys.readouterr().err
    path = tmp_path / "m.yaml"
    path.write_text(
        "kind: LanguageModel\nmetadata: {name: m}\n"
        "spec: {model: {source: 'ftp://x'}, rollout: {steps: [{weight: 50}, {weight: 10}]}}\n"
    )
    assert main(["up", str(path)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "spec.model.source" in err and "strictly increasing" in err


def test_busy_port_is_refused_before_starting_ray(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LMOPS_STATE_DIR", str(tmp_path / "state"))
    path = tmp_path / "m.yaml"
    path.write_text("kind: LanguageModel\nmetadata: {name: m}\nspec: {model: {source: 'builtin://tiny'}}\n")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert cli.port_in_use("127.0.0.1", port)
        assert main(["up", str(path), "--port", str(port)]) == cli.EXIT_USAGE
    assert f"port {port}" in capsys.readouterr().err


def test_down_with_nothing_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("LMOPS_STATE_DIR", str(tmp_path))
    assert main(["down"]) == 0
    assert "Nothing is running" in capsys.readouterr().out


def test_step_printer_prints_changes_once(capsys: pytest.CaptureFixture[str]) -> None:
    printer = cli.StepPrinter()
    at = datetime.now(UTC) + timedelta(seconds=1)
    analysis = AnalysisResult(revision="b", requests=12, verdict="Pass", message="ok", time=at)
    status = LanguageModelStatus(phase="Progressing", last_analysis=analysis)
    step = SimpleNamespace(
        status=status,
        events=[("Normal", "CanaryStep", "step 1/2")],
        decision=SimpleNamespace(weights={"a": 75, "b": 25}),
    )
    printer(step)
    printer(SimpleNamespace(status=status, events=[], decision=step.decision))
    out = capsys.readouterr().out
    assert out.count("traffic: a 75%, b 25%") == 1 and out.count("analysis Pass") == 1
    assert "CanaryStep: step 1/2" in out and "phase: Progressing" in out


def test_curl_examples_fit_the_task() -> None:
    assert "/v1/completions" in cli.curl_example("http://h:1", "m", "generate")
    assert "/predict" in cli.curl_example("http://h:1", "m", "classify")
    assert "/v1/embeddings" in cli.curl_example("http://h:1", "m", "embed")
