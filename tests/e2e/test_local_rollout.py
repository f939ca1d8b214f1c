"""Local mode end to end: the operator's planner pieces roll a real local Serve application forward and back
under steady concurrent load, with zero failed client requests."""

from __future__ import annotations

import copy
import json
import shutil
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from lmops_operator.local.reconciler import LocalReconciler, LocalStep
from lmops_runtime import local as runtime_local

pytestmark = pytest.mark.slow

INTERVAL_S = 5
CLIENTS = 4


def manifest(source: Path, max_new_tokens: int = 8) -> dict[str, Any]:
    return {
        "apiVersion": "lmops.io/v1alpha1",
        "kind": "LanguageModel",
        "metadata": {"name": "tiny"},
        "spec": {
            "model": {"source": f"file://{source}", "generation": {"maxNewTokens": max_new_tokens}},
            "runtime": {"gpus": 0},
            "autoscaling": {"minReplicas": 1, "maxReplicas": 1},
            "rollout": {
                "steps": [{"weight": 25, "pauseSeconds": 4}, {"weight": 60, "pauseSeconds": 4}],
                "analysis": {
                    "intervalSeconds": INTERVAL_S,
                    "minRequests": 5,
                    "failureLimit": 1,
                    "maxErrorRate": 0.05,
                },
            },
        },
    }


@pytest.fixture(scope="module")
def broken_model_dir(tiny_generate_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Loads and passes the health probe (its special tokens exist) but fails every real prompt: the
    embedding table was cut to the 4 special tokens, so any text token is out of range at forward."""
    from transformers import AutoModelForCausalLM

    dest = tmp_path_factory.mktemp("broken-generate")
    for item in tiny_generate_model_dir.iterdir():
        if "token" in item.name or item.name.endswith(".jinja"):
            shutil.copy(item, dest / item.name)
    model = AutoModelForCausalLM.from_pretrained(tiny_generate_model_dir)
    model.resize_token_embeddings(4)
    model.save_pretrained(dest)
    return dest


@dataclass
class Load:
    """Clients sending completions in a loop; counts every outcome, never retries."""

    url: str
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    ok: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return sum(self.ok.values()) + len(self.failures)

    def client(self) -> None:
        with httpx.Client(timeout=60) as http:
            while not self.stop.is_set():
                body = {"model": "tiny", "prompt": "hello world", "max_tokens": 4}
                try:
                    response = http.post(f"{self.url}/v1/completions", json=body)
                    outcome = (
                        response.headers.get("x-lmops-revision", "?")
                        if response.status_code == 200
                        else (f"{response.status_code}: {response.text[:200]}")
                    )
                    good = response.status_code == 200
                except httpx.HTTPError as exc:
                    outcome, good = f"{type(exc).__name__}: {exc}", False
                with self.lock:
                    if good:
                        self.ok[outcome] += 1
                    else:
                        self.failures.append(outcome)


@pytest.fixture
def reconciler(ray_local: None, tmp_path: Path) -> Iterator[LocalReconciler]:
    rec = LocalReconciler(path=tmp_path / "state.json")
    yield rec
    apps = [a for a in runtime_local.status() if a == "lm" or a.startswith("rev-")]
    if apps:
        runtime_local.delete_apps(apps)


def test_canary_promoted_then_failing_canary_rolled_back_under_load(
    reconciler: LocalReconciler, tiny_generate_model_dir: Path, broken_model_dir: Path
) -> None:
    port = runtime_local.free_port()
    reconciler.apply(manifest(tiny_generate_model_dir), http_port=port)
    first = reconciler.run(timeout_s=300)
    assert first.status.phase == "Ready" and first.status.stable_revision == first.target
    port = reconciler.state().http_port
    load = Load(f"http://127.0.0.1:{port}")
    steps: list[tuple[float, dict[str, int], str | None]] = []

    def record(step: LocalStep) -> None:
        weights = dict(step.decision.weights)
        if not steps or steps[-1][1] != weights:
            steps.append((time.monotonic(), weights, step.status.phase))

    with ThreadPoolExecutor(CLIENTS) as pool:
        for _ in range(CLIENTS):
            pool.submit(load.client)
        try:
            time.sleep(2)
            # 1. A healthy canary (a new revision: other generation defaults) walks 25% -> 60% -> 100%.
            reconciler.apply(manifest(tiny_generate_model_dir, max_new_tokens=12), http_port=port)
            promoted = reconciler.run(timeout_s=300, on_step=record)
            healthy_steps = list(steps)
            sent_after_promote = load.sent
            time.sleep(2)
            # 2. A canary that errors at forward is rolled back by the analysis.
            steps.clear()
            reconciler.apply(manifest(broken_model_dir, max_new_tokens=12), http_port=port)
            aborted = reconciler.run(timeout_s=300, on_step=record)
            time.sleep(2)
        finally:
            load.stop.set()

    canary_weights = [w.get(promoted.target, 0) for _, w, _ in healthy_steps]
    assert promoted.status.stable_revision == promoted.target != first.target
    assert canary_weights[-3:] == [25, 60, 100], healthy_steps
    assert promoted.status.phase == "Ready"

    bad = aborted.target
    ro = aborted.status.rollout
    assert ro is not None and ro.state == "Aborted" and ro.abort_reason
    assert aborted.status.stable_revision == promoted.target
    assert aborted.decision.weights == {promoted.target: 100}
    assert aborted.status.phase == "Degraded"
    with_traffic = [t for t, w, _ in steps if w.get(bad, 0) > 0]
    back = [t for t, w, _ in steps if bad not in w]
    assert with_traffic and back
    rollback_s = back[-1] - with_traffic[0]
    assert rollback_s <= INTERVAL_S, steps  # within one analysis interval

    summary = {
        "requests_sent": load.sent,
        "requests_failed": len(load.failures),
        "sent_during_healthy_canary": sent_after_promote,
        "served_by_revision": dict(load.ok),
        "healthy_canary_weights": canary_weights,
        "rollback_seconds_after_first_canary_traffic": round(rollback_s, 2),
        "abort_reason": ro.abort_reason,
        "last_analysis": aborted.status.last_analysis.model_dump(mode="json", exclude_none=True)
        if aborted.status.last_analysis
        else None,
    }
    print("\nLOCAL ROLLOUT E2E " + json.dumps(summary, indent=1))
    assert load.failures == [], load.failures[:5]
    assert load.ok[promoted.target] > 0 and load.ok[first.target] > 0
    assert load.sent > 100
    assert copy.deepcopy(summary)
