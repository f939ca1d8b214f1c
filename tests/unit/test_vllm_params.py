"""The vLLM engine's pure parts: request mapping, logprob conversion, engine metrics and engine selection.

They run without vLLM (the main environment); the vLLM tier (tests/vllm) runs the same code on a real engine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from lmops_runtime.config import ModelSpec
from lmops_runtime.engine.logprobs import StepLogprobs
from lmops_runtime.engine.params import SamplingParams
from lmops_runtime.engine.vllm_params import (
    MASKED_LOGPROB,
    prompt_log_likelihood,
    sampling_kwargs,
    step_logprobs,
    steps_from_vllm,
)
from lmops_runtime.engine.vllm_stats import EngineStats
from lmops_runtime.loading import ModelLoadError
from lmops_runtime.protocol import InvalidRequestError
from lmops_runtime.vllm_server import select_engine, vllm_available


@dataclass
class Lp:
    logprob: float
    rank: int | None


def test_greedy_is_temperature_zero_and_carries_every_adjustment() -> None:
    params = SamplingParams(
        "greedy",
        5,
        stop=("\n",),
        seed=3,
        logprobs=2,
        presence_penalty=0.5,
        frequency_penalty=-1.0,
        logit_bias=((7, 100.0),),
    )
    kwargs = sampling_kwargs(params, echo=True)
    assert kwargs["temperature"] == 0.0 and "top_k" not in kwargs
    assert kwargs["max_tokens"] == 5 and kwargs["stop"] == ["\n"] and kwargs["seed"] == 3
    assert kwargs["logprobs"] == 2 and kwargs["prompt_logprobs"] == 2
    assert (kwargs["presence_penalty"], kwargs["frequency_penalty"]) == (0.5, -1.0)
    assert kwargs["logit_bias"] == {7: 100.0}
    assert sampling_kwargs(params, echo=False)["prompt_logprobs"] is None


def test_sampling_unset_filters_are_vllm_off_values_and_echo_only_asks_one_token() -> None:
    kwargs = sampling_kwargs(SamplingParams("sample", 0, temperature=0.7), echo=True)
    assert (kwargs["temperature"], kwargs["top_k"], kwargs["top_p"]) == (0.7, 0, 1.0)
    assert kwargs["max_tokens"] == 1 and kwargs["stop"] is None and kwargs["logit_bias"] is None
    assert kwargs["prompt_logprobs"] is None  # echo without logprobs needs no prompt scoring
    filtered = sampling_kwargs(SamplingParams("sample", 4, top_k=5, top_p=0.9), echo=False)
    assert (filtered["top_k"], filtered["top_p"]) == (5, 0.9)


def test_beam_search_is_rejected_with_what_to_do() -> None:
    with pytest.raises(InvalidRequestError, match="engine transformers"):
        sampling_kwargs(SamplingParams("beam", 4, num_beams=2), echo=False)


def test_step_logprobs_orders_by_rank_and_keeps_a_chosen_token_outside_the_top() -> None:
    position = {5: Lp(-0.1, 1), 9: Lp(-2.0, 2), 4: Lp(-7.5, 40)}
    step = step_logprobs(4, position, 2)
    assert step == StepLogprobs(4, -7.5, [5, 9], [-0.1, -2.0])
    assert step_logprobs(5, {5: Lp(-0.1, 1)}, 0) == StepLogprobs(5, -0.1, [], [])
    assert step_logprobs(1, None, 3) == StepLogprobs(1, None)
    masked = step_logprobs(2, {2: Lp(-math.inf, 3), 1: Lp(0.0, 1)}, 1)
    assert masked.logprob == MASKED_LOGPROB and masked.top_logprobs == [0.0]
    with pytest.raises(RuntimeError, match="chosen token 8"):
        step_logprobs(8, {5: Lp(-0.1, 1)}, 1)


def test_prompt_steps_and_log_likelihood() -> None:
    steps = steps_from_vllm([1, 2, 3], [None, {2: Lp(-1.0, 1)}, {3: Lp(-2.5, 2), 0: Lp(-0.5, 1)}], 0)
    assert prompt_log_likelihood(steps) == (-3.5, 2)
    assert prompt_log_likelihood(steps[:1]) == (0.0, 0)
    with pytest.raises(RuntimeError, match="logprobs for 1 of 2"):
        steps_from_vllm([1, 2], [None], 0)


def test_engine_stats_sum_latencies_and_keep_the_latest_gauges() -> None:
    stats = EngineStats()
    finished = [
        SimpleNamespace(num_generation_tokens=8, mean_time_per_output_token=0.02),
        SimpleNamespace(num_generation_tokens=1, mean_time_per_output_token=0.0),
    ]
    iteration = SimpleNamespace(
        time_to_first_tokens_iter=[0.5, 0.25], inter_token_latencies_iter=[0.01], finished_requests=finished
    )
    stats.record(SimpleNamespace(num_running_reqs=3, num_waiting_reqs=2, kv_cache_usage=0.4), iteration)
    stats.record(SimpleNamespace(num_running_reqs=1, num_waiting_reqs=0, kv_cache_usage=0.1), None)
    snap = stats.snapshot()
    assert snap["time_to_first_token_seconds_sum"] == 0.75 and snap["time_to_first_token_seconds_count"] == 2
    assert snap["inter_token_latency_seconds_count"] == 1
    assert snap["request_time_per_output_token_seconds_count"] == 1  # one-token requests have no TPOT
    assert (snap["num_requests_running"], snap["num_requests_waiting"]) == (1, 0)
    assert snap["kv_cache_usage_perc"] == 0.1


def test_engine_selection() -> None:
    generate = ModelSpec(source="builtin://tiny")
    assert select_engine(generate.model_copy(update={"engine": "transformers"})) == "transformers"
    classify = ModelSpec(source="builtin://tiny", task="classify", labels=["a", "b"])
    assert select_engine(classify) == "transformers"
    assert select_engine(generate) == ("vllm" if vllm_available() else "transformers")
    with pytest.raises(ModelLoadError, match="generate only"):
        select_engine(classify.model_copy(update={"engine": "vllm"}))
    if not vllm_available():
        with pytest.raises(ModelLoadError, match="vLLM installed"):
            select_engine(generate.model_copy(update={"engine": "vllm"}))


def test_engine_metrics_store_sums_replicas_and_keeps_totals_of_gone_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from lmops_runtime import engine_metrics

    clock = [100.0]
    monkeypatch.setattr(engine_metrics.time, "monotonic", lambda: clock[0])
    store = engine_metrics.EngineMetricsStore()
    base = {"time_to_first_token_seconds_sum": 1.0, "time_to_first_token_seconds_count": 2}
    store.push("r1", "a", {**base, "num_requests_waiting": 3, "kv_cache_usage_perc": 0.2})
    store.push("r1", "b", {**base, "num_requests_waiting": 1, "kv_cache_usage_perc": 0.4})
    snap = store.snapshot()["r1"]
    assert snap["time_to_first_token_seconds_count"] == 4 and snap["num_requests_waiting"] == 4
    assert snap["kv_cache_usage_perc"] == pytest.approx(0.3) and snap["replicas"] == 2
    clock[0] += engine_metrics.REPLICA_LIVE_S + 1
    store.push("r1", "b", {**base, "num_requests_waiting": 0, "kv_cache_usage_perc": 0.1})
    snap = store.snapshot()["r1"]
    # a's totals are retired (counters never go back); its gauges no longer count.
    assert snap["time_to_first_token_seconds_count"] == 4 and snap["time_to_first_token_seconds_sum"] == 2.0
    assert snap["num_requests_waiting"] == 0 and snap["replicas"] == 1
    families = {
        f.name: f for f in text_string_to_metric_families(engine_metrics.render_prometheus({"r1": snap}))
    }
    (count,) = [s for s in families["vllm:time_to_first_token_seconds"].samples if s.name.endswith("_count")]
    assert count.labels == {"revision": "r1"} and count.value == 4
    assert families["vllm:kv_cache_usage_perc"].samples[0].value == pytest.approx(0.1)
    assert engine_metrics.render_prometheus({}).startswith("# HELP")
