"""Local mode and ``lmops render`` refuse the ``metadata`` the API server refuses, naming the field as it
does, and accept what it accepts (tests/support/metadata_cases.py; the control-plane tier checks the same
table against the real API server)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lmops_operator.api import InvalidLanguageModel, load_language_model
from lmops_operator.api import metadata as rules
from lmops_operator.cli import main
from lmops_operator.commands import local as local_cli
from tests.support.metadata_cases import INVALID_METADATA, VALID_METADATA, MetadataCase


@pytest.mark.parametrize("case", INVALID_METADATA, ids=lambda c: c.id)
def test_local_mode_refuses_what_the_server_refuses(case: MetadataCase) -> None:
    with pytest.raises(InvalidLanguageModel) as info:
        load_language_model(case.object())
    assert any(path == case.path and case.message in message for path, message in info.value.errors), (
        info.value.errors
    )


@pytest.mark.parametrize("case", VALID_METADATA, ids=lambda c: c.id)
def test_local_mode_accepts_what_the_server_accepts(case: MetadataCase) -> None:
    assert load_language_model(case.object()).metadata.name == case.object()["metadata"]["name"]


@pytest.mark.parametrize("case", INVALID_METADATA[:4] + INVALID_METADATA[-4:], ids=lambda c: c.id)
def test_render_and_up_refuse_it_before_anything_runs(
    case: MetadataCase,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("LMOPS_STATE_DIR", str(tmp_path / "state"))
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(case.object()))
    assert main(["render", str(path)]) == 1
    assert case.message in capsys.readouterr().err
    assert main(["up", str(path)]) == local_cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert f"  {case.path}: " in err and case.message in err


def test_the_model_name_must_also_name_its_service() -> None:
    """The server takes ``a.b`` or ``1abc`` for a custom resource, but the model's Service cannot have that
    name, so the CRD refuses it with a CEL rule and the models with the same message."""
    for name in ("a.b", "1abc"):
        with pytest.raises(InvalidLanguageModel, match="it names the model's Service"):
            load_language_model({"metadata": {"name": name}, "spec": {"model": {"source": "builtin://tiny"}}})


def test_lengths_are_bytes_and_a_generated_name_may_end_in_a_dash() -> None:
    assert rules.label_value("é" * 31) == [
        rules.LABEL_VALUE_MESSAGE
    ]  # 62 bytes: the characters, not the size
    assert rules.label_value("é" * 32)[0] == "must be no more than 63 bytes"
    assert rules.generate_name("model-") == [] and rules.generate_name("-") != []
    assert rules.qualified_name("example.com/" + "k" * 63) == []
    assert rules.qualified_name("e" * 254 + "/k") == ["prefix part must be no more than 253 bytes"]
