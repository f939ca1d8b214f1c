"""The quality gate through a real Router on local Ray: revision-pinned accuracy (/predict) and perplexity
(/v1/score), judged against the stable revision per maxDegradation.

Revisions sit at weight 0 beside the stable one, as a canary does before any traffic. "good" canaries are
the stable model under another name; "bad" ones are real models made worse: the causal LM's output layer
scaled up fivefold (over-confident next tokens, so higher perplexity), the classifier's head negated (its best
label becomes its worst, so every stable prediction is missed).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from lmops_operator.api.rollout_spec import QualityGateSpec
from lmops_operator.quality_gate import RouterEvaluator, evaluate_gate, parse_eval_set
from lmops_runtime.config import RouterConfig
from lmops_runtime.contract import REVISION_HEADER
from testkit.models import copy_tokenizer
from tests.runtime import serve_configs as sc
from tests.runtime.router_support import deployed

pytestmark = pytest.mark.slow

NOW = datetime(2026, 1, 1, tzinfo=UTC)
TEXTS = [
    "the service was great",
    "terrible, never again",
    "it was fine I guess",
    "hello world",
    "a quick brown fox",
    "prices went up",
    "nothing to report",
    "absolutely wonderful evening",
    "x",
    "the model answered in time",
]


def _worse_generator(source: Path, dest: Path) -> Path:
    model = AutoModelForCausalLM.from_pretrained(source)
    with torch.no_grad():
        model.lm_head.weight.mul_(5.0)
    model.save_pretrained(dest)
    copy_tokenizer(source, dest)
    return dest


def _worse_classifier(source: Path, dest: Path) -> Path:
    model = AutoModelForSequenceClassification.from_pretrained(source)
    with torch.no_grad():
        model.classifier.weight.neg_()
        model.classifier.bias.neg_()
    model.save_pretrained(dest)
    copy_tokenizer(source, dest)
    return dest


@pytest.fixture(scope="module")
def router(
    ray_local: None,
    tiny_generate_model_dir: Path,
    tiny_classify_model_dir: Path,
    tiny_classify_labels: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    bad_lm = _worse_generator(tiny_generate_model_dir, tmp_path_factory.mktemp("bad-lm"))
    bad_cls = _worse_classifier(tiny_classify_model_dir, tmp_path_factory.mktemp("bad-cls"))
    weights = {"s": 100, "good": 0, "bad": 0, "cs": 0, "cgood": 0, "cbad": 0}
    config = RouterConfig.model_validate({"weights": weights, "stable": "s"})

    def classifier(revision: str, path: Path) -> dict[str, Any]:
        return sc.server_app(revision, path, task="classify", labels=tiny_classify_labels)

    document = sc.document(
        sc.router_app(config),
        sc.server_app("s", tiny_generate_model_dir),
        sc.server_app("good", tiny_generate_model_dir),
        sc.server_app("bad", bad_lm),
        classifier("cs", tiny_classify_model_dir),
        classifier("cgood", tiny_classify_model_dir),
        classifier("cbad", bad_cls),
    )
    with deployed(document) as url:
        yield url


def _gate(metric: str, max_degradation: float) -> QualityGateSpec:
    return QualityGateSpec.model_validate(
        {"configMapRef": {"name": "e", "key": "k"}, "metric": metric, "maxDegradation": max_degradation}
    )


def _data(*revisions: str) -> dict[str, dict[str, Any]]:
    return {rev: {"model": {"source": f"file:///{rev}"}} for rev in revisions}


def _corpus_perplexity(model_dir: Path, texts: list[str]) -> float:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)  # loads in eval mode
    nll, tokens = 0.0, 0
    for text in texts:
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
        if ids.shape[1] < 2:
            continue
        with torch.inference_mode():
            nll += float(model(input_ids=ids, labels=ids).loss) * (ids.shape[1] - 1)
        tokens += ids.shape[1] - 1
    return math.exp(nll / tokens)


def test_perplexity_gate_passes_an_equal_canary_and_fails_a_worse_one(
    router: str, tiny_generate_model_dir: Path
) -> None:
    examples = parse_eval_set("\n".join(json.dumps({"text": t}) for t in TEXTS), "perplexity")
    evaluator = RouterEvaluator(router, batch=4)  # several /v1/score calls per revision
    gate = _gate("perplexity", 0.05)
    data = _data("s", "good", "bad")
    stable = _corpus_perplexity(tiny_generate_model_dir, TEXTS)

    good = evaluate_gate(gate, "good", "s", data, examples, evaluator, NOW)
    assert good.verdict == "Pass", good.message
    assert good.stable == pytest.approx(stable, rel=1e-4) and good.canary == pytest.approx(stable, rel=1e-4)
    assert good.samples == len(TEXTS)

    bad = evaluate_gate(gate, "bad", "s", data, examples, evaluator, NOW)
    assert bad.verdict == "Fail" and "exceeds" in bad.message, bad.message
    assert bad.canary > stable * 1.05 and bad.degradation is not None and bad.degradation > 0.05
    # The seeded tiny model degrades by about 64 percent: a bound above that lets the same canary pass.
    assert 0.05 < bad.degradation < 1.0
    lenient = evaluate_gate(_gate("perplexity", 1.0), "bad", "s", data, examples, evaluator, NOW)
    assert lenient.verdict == "Pass" and lenient.canary == pytest.approx(bad.canary, rel=1e-4)


def test_accuracy_gate_passes_an_equal_canary_and_fails_a_worse_one(router: str) -> None:
    # Label the set with the stable revision's own answers, so it scores 1.0 and a canary must match it.
    answer = httpx.post(
        f"{router}/predict", json={"texts": TEXTS}, headers={REVISION_HEADER: "cs"}, timeout=120
    )
    assert answer.status_code == 200 and answer.headers[REVISION_HEADER] == "cs", answer.text
    labels = [p["label"] for p in answer.json()["predictions"]]
    lines = [json.dumps({"text": t, "label": label}) for t, label in zip(TEXTS, labels, strict=True)]
    examples = parse_eval_set("\n".join(lines), "accuracy")
    evaluator = RouterEvaluator(router, batch=3)
    gate = _gate("accuracy", 0.1)
    data = _data("cs", "cgood", "cbad")

    good = evaluate_gate(gate, "cgood", "cs", data, examples, evaluator, NOW)
    assert (good.verdict, good.canary, good.stable) == ("Pass", 1.0, 1.0), good.message
    bad = evaluate_gate(gate, "cbad", "cs", data, examples, evaluator, NOW)
    assert (bad.verdict, bad.canary, bad.stable) == ("Fail", 0.0, 1.0), bad.message


def test_an_unknown_or_wrong_task_revision_makes_the_gate_inconclusive(router: str) -> None:
    examples = parse_eval_set('{"text": "hello world"}', "perplexity")
    data = _data("s", "gone", "cs")
    evaluator = RouterEvaluator(router)
    gone = evaluate_gate(_gate("perplexity", 0.05), "gone", "s", data, examples, evaluator, NOW)
    assert gone.verdict == "Inconclusive" and "Unknown revision 'gone'" in gone.message
    wrong = evaluate_gate(_gate("perplexity", 0.05), "cs", "s", data, examples, evaluator, NOW)
    assert wrong.verdict == "Inconclusive" and "serves classify" in wrong.message
