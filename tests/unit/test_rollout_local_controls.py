"""``lmops rollout`` on the local model, through the real CLI: which model a command picks, the one driver of
the loop and the controls handed to it, and every command against local mode's state file, with Serve faked
(tests/e2e/test_local_rollout_cli.py runs the same on a real local Ray). Also: a missing prerequisite is one
line and exit code 1, never a traceback."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from lmops_operator.cli import main
from lmops_operator.commands import rollout_local
from lmops_operator.commands.errors import NO_KUBECONFIG
from lmops_operator.local import controls as pending
from lmops_operator.local import state as store
from lmops_operator.local.reconciler import LocalReconciler
from lmops_operator.planning.traffic import Controls
from lmops_runtime.local_env import AUTH_VARIABLES
from tests.unit.test_rollout_local import FakeServe, manifest


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A state directory of the test's own, no kubeconfig anywhere, Ray's auth variables restored."""
    monkeypatch.setenv("LMOPS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    for name in AUTH_VARIABLES:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> FakeServe:
    """Serve faked, and the CLI's reconciler built on it instead of on a local Ray."""
    fake = FakeServe()

    def reconciler() -> LocalReconciler:
        return LocalReconciler(
            deploy=fake.deploy,
            serve_apps=fake.serve_apps,
            read_stats=fake.read_stats,
            router_weights=lambda url: fake.router_weights,
        )

    monkeypatch.setattr(rollout_local, "_reconciler", reconciler)
    return fake


def served(*sources: str, **rollout: Any) -> list[str]:
    """Serve ``sources`` one after the other (each rolled out immediately); returns their revisions."""
    rec = rollout_local._reconciler()
    revisions = []
    for source in sources:
        rec.apply(manifest(source, strategy="Immediate", **rollout), http_port=9000)
        revisions.append(rec.run(timeout_s=5, sleep=lambda s: None).target)
    return revisions


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ---- the driver lock and handed-over controls ----------------------------------------------------------


def test_one_process_drives_and_the_lock_ends_with_it(tmp_path: Path) -> None:
    path = tmp_path / "local-model.json"
    first = pending.acquire(path)
    assert first is not None
    assert pending.acquire(path) is None  # another open file: refused, as another process would be
    with pending.driving(path) as mine:
        assert not mine
    pending.release(first)
    with pending.driving(path) as mine:
        assert mine


def test_requested_controls_merge_and_are_taken_once(tmp_path: Path) -> None:
    path = tmp_path / "local-model.json"
    assert pending.take(path) is None
    pending.request(path, Controls(promote=True))
    pending.request(path, Controls(restart=True))
    assert pending.take(path) == Controls(promote=True, restart=True)
    assert pending.take(path) is None
    pending.request(path, Controls(promote=True))
    pending.request(path, Controls(abort=True))
    assert pending.take(path) == Controls(abort=True)  # abort wins, as with the annotations


def test_the_driving_reconciler_acts_on_a_handed_over_promote(serve: FakeServe) -> None:
    served("builtin://tiny")
    rec = rollout_local._reconciler()
    rec.apply(manifest("file:///new", steps=[{"weight": 50, "pauseSeconds": 3600}]), http_port=9000)
    step = rec.reconcile()
    while step.status.canary_weight != 50:
        step = rec.reconcile()
    pending.request(store.state_path(), Controls(promote=True))
    promoted = rec.run(timeout_s=5, sleep=lambda s: None)
    assert promoted.status.stable_revision == step.target and promoted.decision.weights == {step.target: 100}
    assert not pending.requests_path(store.state_path()).exists()


# ---- the commands on the local model --------------------------------------------------------------------


def test_history_and_status_read_the_local_state(
    serve: FakeServe, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = served("builtin://tiny", "file:///new")
    code, out, _ = run(capsys, "rollout", "history", "m")
    assert code == 0
    rows = out.splitlines()
    assert rows[0].split() == ["REVISION", "NAME", "ROLE", "CREATED", "SOURCE"]
    assert rows[1].split()[:2] == ["1", first] and rows[1].split()[-1] == "builtin://tiny"
    assert rows[2].split()[:3] == ["2", second, "stable"]
    code, out, _ = run(capsys, "rollout", "status", "m", "-w")
    assert code == 0 and out.splitlines()[:2] == ["m: phase Ready", f"  stable:  {second}"]


def test_undo_restores_the_previous_revision_and_rolls_it_out(
    serve: FakeServe, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = served("builtin://tiny", "file:///new")
    code, out, err = run(capsys, "rollout", "undo", "m")
    assert code == 0, err
    assert f"rolling back to revision 1 ({first})" in out and f"stable:  {first}" in out
    state = store.load()
    assert state is not None and state.manifest["spec"]["model"]["source"] == "builtin://tiny"
    assert state.status["stableRevision"] == first
    # The restored revision is numbered anew (3), as the operator renumbers its ControllerRevision.
    code, out, _ = run(capsys, "rollout", "history", "m")
    rows = [line.split() for line in out.splitlines()[1:]]
    assert [row[:2] for row in rows] == [["2", second], ["3", first]] and rows[1][2] == "stable"
    code, out, _ = run(capsys, "rollout", "undo", "m", "--to-revision", "3")
    assert code == 0 and f"already at revision 3 ({first})" in out


def test_a_control_without_a_driver_acts_and_follows_the_rollout(
    serve: FakeServe, capsys: pytest.CaptureFixture[str]
) -> None:
    served("builtin://tiny")
    rec = rollout_local._reconciler()
    rec.apply(manifest("file:///new", steps=[{"weight": 50, "pauseSeconds": 3600}]), http_port=9000)
    canary = rec.reconcile().target
    while rec.reconcile().status.canary_weight != 50:
        pass
    code, out, err = run(capsys, "rollout", "abort", "m")
    assert code == 0, err
    assert "m: abort" in out and "rollout: " in out and "Aborted" in out
    code, out, _ = run(capsys, "rollout", "status", "m", "--watch")
    assert code == 1 and f"{canary} Aborted" in out  # as `kubectl rollout status` ends on a failed rollout


def test_while_up_drives_controls_are_handed_over_and_undo_waits(
    serve: FakeServe, capsys: pytest.CaptureFixture[str]
) -> None:
    served("builtin://tiny", "file:///new")
    lock = pending.acquire(store.state_path())  # as a running `lmops up` holds it
    try:
        code, out, _ = run(capsys, "rollout", "promote", "m")
        assert code == 0 and "the `lmops up` rolling it out applies it" in out
        assert pending.take(store.state_path()) == Controls(promote=True)
        code, _, err = run(capsys, "rollout", "undo", "m")
        assert code == 1 and "`lmops up` is rolling m out right now" in err
    finally:
        assert lock is not None
        pending.release(lock)


# ---- which model, and one line for what is missing --------------------------------------------------------


def test_the_local_model_is_chosen_by_name_unless_a_cluster_is_asked_for(serve: FakeServe) -> None:
    served("builtin://tiny")

    def args(name: str, **given: Any) -> argparse.Namespace:
        return argparse.Namespace(
            name=name, **{"local": False, "kubeconfig": None, "namespace": None, **given}
        )

    assert rollout_local.local_model(args("m")) is not None
    assert rollout_local.local_model(args("m", kubeconfig="kc")) is None
    assert rollout_local.local_model(args("m", namespace="prod")) is None
    assert rollout_local.local_model(args("other")) is None
    with pytest.raises(rollout_local.RolloutError, match="the local model is m, not other"):
        rollout_local.local_model(args("other", local=True))


def test_missing_prerequisites_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "rollout", "history", "tiny")
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert NO_KUBECONFIG in err and "no local model named tiny runs either" in err
    code, _, err = run(capsys, "rollout", "undo", "tiny", "--kubeconfig", str(tmp_path / "nope"))
    assert code == 1 and err == f"lmops rollout: {tmp_path / 'nope'}: no such kubeconfig file\n"
    code, _, err = run(capsys, "rollout", "status", "tiny", "--local")
    assert code == 1 and "no local model runs: `lmops up FILE` serves tiny" in err


def test_unreachable_cluster_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\nusers: [{name: u, user: {token: t}}]\n"
    )
    code, _, err = run(capsys, "rollout", "status", "tiny", "--kubeconfig", str(kubeconfig))
    assert code == 1 and err.count("\n") == 1 and "cannot reach the Kubernetes API server" in err


def test_help_speaks_to_users(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "lmops up" in out and "lmops_operator" not in out
    with pytest.raises(SystemExit):
        main(["rollout", "history", "--help"])
    assert "--local" in capsys.readouterr().out
