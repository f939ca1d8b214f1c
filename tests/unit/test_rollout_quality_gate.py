"""The quality gate: evaluation-set parsing, the degradation rule, and the gate inside a local rollout."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from lmops_operator.api.rollout_spec import QualityGateSpec
from lmops_operator.local.reconciler import LocalReconciler
from lmops_operator.quality_gate import (
    Example,
    RouterEvaluator,
    compare,
    evaluate_gate,
    parse_eval_set,
)
from lmops_runtime.contract import REVISION_HEADER
from tests.unit.rollout_helpers import T0
from tests.unit.test_rollout_local import FakeServe


def test_parse_eval_set() -> None:
    text = '{"text": "good", "label": "pos"}\n\n{"text": "bad", "label": "neg"}\n'
    assert parse_eval_set(text, "accuracy") == [Example("good", "pos"), Example("bad", "neg")]
    assert parse_eval_set('{"text": "abc"}', "perplexity") == [Example("abc")]
    for bad, words in [
        ('{"text": "x"}', "label"),
        ("not json", "line 1"),
        ('{"label": "x"}\n', "text"),
        ("", "empty"),
    ]:
        with pytest.raises(ValueError, match=words):
            parse_eval_set(bad, "accuracy")


@pytest.mark.parametrize(
    ("metric", "canary", "stable", "limit", "degradation", "passed"),
    [
        ("accuracy", 0.9, 0.9, 0.02, 0.0, True),
        ("accuracy", 0.95, 0.9, 0.0, -0.0556, True),
        ("accuracy", 0.88, 0.9, 0.02, 0.0222, False),
        ("accuracy", 0.89, 0.9, 0.02, 0.0111, True),
        ("perplexity", 10.0, 10.0, 0.0, 0.0, True),
        ("perplexity", 10.5, 10.0, 0.02, 0.05, False),
        ("perplexity", 9.0, 10.0, 0.0, -0.1, True),
        ("accuracy", 0.1, 0.0, 0.02, 0.0, True),
    ],
)
def test_compare(
    metric: Any, canary: float, stable: float, limit: float, degradation: float, passed: bool
) -> None:
    got, ok = compare(metric, canary, stable, limit)
    assert round(got, 4) == degradation and ok is passed


class FakeEvaluator:
    def __init__(self, scores: Mapping[str, float], broken: bool = False) -> None:
        self.scores = scores
        self.broken = broken
        self.calls: list[str] = []

    def accuracy(self, revision: str, data: Mapping[str, Any], examples: list[Example]) -> float:
        self.calls.append(revision)
        return self.scores[data["model"]["source"]]

    def perplexity(self, revision: str, data: Mapping[str, Any], texts: list[str]) -> float:
        self.calls.append(revision)
        if self.broken:
            raise RuntimeError("model exploded")
        return self.scores[data["model"]["source"]]


def test_evaluate_gate_reports_failures_as_inconclusive() -> None:
    gate = QualityGateSpec.model_validate(
        {"configMapRef": {"name": "e", "key": "k"}, "metric": "perplexity", "maxDegradation": 0.1}
    )
    data = {"a": {"model": {"source": "file:///a"}}, "b": {"model": {"source": "file:///b"}}}
    ok = evaluate_gate(
        gate, "b", "a", data, [Example("x")], FakeEvaluator({"file:///a": 10, "file:///b": 10.5}), T0
    )
    assert ok.verdict == "Pass" and ok.stable == 10 and ok.canary == 10.5 and ok.samples == 1
    bad = evaluate_gate(
        gate, "b", "a", data, [Example("x")], FakeEvaluator({"file:///a": 10, "file:///b": 12}), T0
    )
    assert bad.verdict == "Fail" and "exceeds" in bad.message
    broken = evaluate_gate(gate, "b", "a", data, [Example("x")], FakeEvaluator({}, broken=True), T0)
    assert broken.verdict == "Inconclusive" and "exploded" in broken.message


def _manifest(source: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "m"},
        "spec": {
            "model": {"source": source, "task": "classify", "labels": ["neg", "pos"]},
            "runtime": {"gpus": 0},
            "rollout": {
                "steps": [{"weight": 50, "pauseSeconds": 0}],
                "qualityGate": {
                    "configMapRef": {"name": "evals", "key": "set.jsonl"},
                    "metric": "accuracy",
                    "maxDegradation": 0.05,
                },
            },
        },
    }


@pytest.mark.parametrize(("canary_accuracy", "state"), [(0.9, "Progressing"), (0.5, "Aborted")])
def test_gate_runs_in_a_local_rollout_before_any_traffic(
    tmp_path: Path, canary_accuracy: float, state: str
) -> None:
    serve = FakeServe()
    evaluator = FakeEvaluator({"file:///a": 0.9, "file:///b": canary_accuracy})
    rec = LocalReconciler(
        path=tmp_path / "s.json",
        deploy=serve.deploy,
        serve_apps=serve.serve_apps,
        read_stats=serve.read_stats,
        router_weights=lambda url: serve.router_weights,
        now=lambda: serve.clock,
        evaluator=evaluator,
    )
    maps = {"evals": {"set.jsonl": '{"text": "a", "label": "pos"}\n{"text": "b", "label": "neg"}'}}
    rec.apply(_manifest("file:///a"), http_port=9000, config_maps=maps)
    rec.run(timeout_s=5, sleep=lambda s: None)
    assert evaluator.calls == []  # first deploy: nothing to compare with
    rec.apply(_manifest("file:///b"), http_port=9000)
    steps = [rec.reconcile() for _ in range(4)]
    gate_step = next(s for s in steps if s.status.rollout and s.status.rollout.state == "QualityGate")
    assert gate_step.decision.weights[gate_step.target] == 0
    final = steps[-1].status
    assert final.rollout is not None and final.rollout.state == state
    assert final.rollout.quality_gate is not None and final.rollout.quality_gate.canary == canary_accuracy
    assert len(evaluator.calls) == 2


class FakeRouter(ThreadingHTTPServer):
    """Answers /predict and /v1/score like the Router, recording the pinned revision of every call.

    Every text's label is "pos" when it starts with "a", else "neg"; a text of n characters scores a
    log-likelihood of -2 per token over n - 1 tokens (perplexity e^2). Revision "liar" is answered as
    "other" (a Router that ignores pins); revision "missing" gets the Router's 400.
    """

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _FakeRouterHandler)
        self.pins: list[str | None] = []
        self.authorizations: list[str | None] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _FakeRouterHandler(BaseHTTPRequestHandler):
    server: FakeRouter

    def do_POST(self) -> None:
        pin = self.headers.get(REVISION_HEADER)
        self.server.pins.append(pin)
        self.server.authorizations.append(self.headers.get("authorization"))
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        if pin == "missing":
            self._answer(400, {"error": {"message": "Unknown revision 'missing'", "type": "x"}}, None)
        elif self.path == "/predict":
            labels = ["pos" if t.startswith("a") else "neg" for t in body["texts"]]
            self._answer(200, {"predictions": [{"label": label} for label in labels]}, pin)
        else:
            data = [{"log_likelihood": -2.0 * (len(t) - 1), "tokens": len(t) - 1} for t in body["input"]]
            self._answer(200, {"data": data}, pin)

    def _answer(self, code: int, body: dict[str, Any], revision: str | None) -> None:
        raw = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(raw)))
        if revision is not None:
            self.send_header(REVISION_HEADER, "other" if revision == "liar" else revision)
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def fake_router() -> Iterator[FakeRouter]:
    server = FakeRouter()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_router_evaluator_pins_every_call_and_batches(fake_router: FakeRouter) -> None:
    evaluator = RouterEvaluator(fake_router.url, batch=2)
    texts = ["abc", "hello", "x", "four", "ab"]  # "x" has no token to predict
    assert evaluator.perplexity("r1", {}, texts) == pytest.approx(math.e**2)
    assert fake_router.pins == ["r1"] * 3
    examples = [Example("apple", "pos"), Example("berry", "pos"), Example("cherry", "neg")]
    assert evaluator.accuracy("r2", {}, examples) == pytest.approx(2 / 3)
    assert fake_router.pins[3:] == ["r2", "r2"]
    assert fake_router.authorizations == [None] * 5
    RouterEvaluator(fake_router.url, api_key="sk-1").perplexity("r1", {}, ["abc"])
    assert fake_router.authorizations[-1] == "Bearer sk-1"


def test_router_evaluator_refuses_unpinned_answers_and_reports_router_errors(
    fake_router: FakeRouter,
) -> None:
    evaluator = RouterEvaluator(fake_router.url)
    with pytest.raises(RuntimeError, match="cannot pin revision liar \\(answered by other\\)"):
        evaluator.accuracy("liar", {}, [Example("a", "pos")])
    with pytest.raises(RuntimeError, match="HTTP 400: Unknown revision 'missing'"):
        evaluator.perplexity("missing", {}, ["abc"])
    with pytest.raises(ValueError, match="two or more tokens"):
        evaluator.perplexity("r1", {}, ["x", "y"])


def test_local_mode_evaluates_through_its_own_router_by_default(
    tmp_path: Path, fake_router: FakeRouter
) -> None:
    """No evaluator given: the local reconciler pins calls on the Router it deployed (the recorded port)."""
    serve = FakeServe()

    def deploy(document: dict[str, Any], http_port: int, host: str) -> int:
        serve.deploy(document, http_port, host)
        return int(fake_router.server_address[1])

    rec = LocalReconciler(
        path=tmp_path / "s.json",
        deploy=deploy,
        serve_apps=serve.serve_apps,
        read_stats=serve.read_stats,
        router_weights=lambda url: serve.router_weights,
        now=lambda: serve.clock,
    )
    maps = {"evals": {"set.jsonl": '{"text": "a", "label": "pos"}\n{"text": "b", "label": "neg"}'}}
    rec.apply(_manifest("file:///a"), http_port=0, config_maps=maps)
    first = rec.run(timeout_s=5, sleep=lambda s: None)
    rec.apply(_manifest("file:///b"), http_port=0)
    steps = [rec.reconcile() for _ in range(4)]
    final = steps[-1].status
    assert final.rollout is not None and final.rollout.state == "Progressing"
    assert final.rollout.quality_gate is not None and final.rollout.quality_gate.canary == 1.0
    assert set(fake_router.pins) == {steps[-1].target, first.target}
