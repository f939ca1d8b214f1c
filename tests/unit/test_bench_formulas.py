"""The benchmarks' pure parts: decode ceilings, the rollout's GPU accounting, API-request bookkeeping."""

from __future__ import annotations

from collections import Counter

import pytest

from bench.apiserver import operator_requests, parse_request_totals, writes
from bench.operator_scale import owned_copy, rss_budget_mib
from bench.rollout import AppView, ReplicaModel, demanded_replicas, kuberay_new_cluster_gpus
from bench.serving_baselines import bandwidth_ceiling, compute_ceiling, make_prompts


def test_bandwidth_ceiling_is_batch_times_bandwidth_over_weight_bytes() -> None:
    # 100 MB of weights at 25 GB/s: 250 steps/s, one token per sequence per step.
    assert bandwidth_ceiling(1, 100_000_000, 25e9) == pytest.approx(250.0)
    assert bandwidth_ceiling(32, 100_000_000, 25e9) == pytest.approx(8000.0)
    assert bandwidth_ceiling(8, 0, 25e9) == 0.0


def test_compute_ceiling_is_two_flops_per_parameter_per_token() -> None:
    assert compute_ceiling(25_000_000, 100e9) == pytest.approx(2000.0)
    assert compute_ceiling(0, 1e9) == 0.0


def test_prompts_have_exactly_the_requested_byte_length_and_differ() -> None:
    prompts = make_prompts(16, 32)
    assert all(len(p.encode()) == 32 for p in prompts)
    assert len(set(prompts)) == 16
    assert make_prompts(16, 32) == prompts


def test_byte_level_tokenizer_gives_one_token_per_prompt_byte() -> None:
    from bench.serving_baselines import _tokenizer

    tokenizer = _tokenizer()
    prompts = make_prompts(4, 24)
    ids = tokenizer(prompts, return_tensors="pt").input_ids
    assert tuple(ids.shape) == (4, 24)
    assert tokenizer.decode(ids[0]) == prompts[0]


def test_kuberay_new_cluster_holds_two_full_clusters() -> None:
    assert kuberay_new_cluster_gpus(4, 2) == 16


@pytest.mark.parametrize(
    ("weight", "load", "low", "high", "expected"),
    [
        (10, 4, 1, 4, 1),
        (50, 4, 1, 4, 2),
        (100, 4, 1, 4, 4),
        (10, 8, 1, 8, 1),
        (60, 8, 1, 8, 5),
        (0, 4, 1, 4, 1),
        (0, 4, 0, 4, 0),
        (10, 4, 4, 4, 4),
    ],
)
def test_demanded_replicas_rounds_up_within_bounds(
    weight: int, load: int, low: int, high: int, expected: int
) -> None:
    assert demanded_replicas(weight, load, low, high) == expected


def _app(weight: int, down: float = 600.0, up: float = 30.0, low: int = 1, high: int = 4) -> AppView:
    return AppView(weight, low, high, gpus_per_replica=2, upscale_delay_s=up, downscale_delay_s=down)


def test_replica_model_waits_for_the_delays_and_drops_removed_apps() -> None:
    model = ReplicaModel(load_replicas=4)
    assert model.advance({"a": _app(100)}, 0) == 2  # starts at min 1 replica
    assert model.advance({"a": _app(100)}, 20) == 2  # upscale delay 30 s not over
    assert model.advance({"a": _app(100)}, 30) == 8  # 4 replicas x 2 GPUs
    # Canary at 50 %: it scales up after 30 s; the stable keeps 4 replicas for the 600 s downscale delay.
    apps = {"a": _app(50), "b": _app(50)}
    assert model.advance(apps, 40) == 8 + 2
    assert model.advance(apps, 70) == 8 + 4
    assert model.replicas == {"a": 4, "b": 2}
    # Promotion removes the old application at once.
    assert model.advance({"b": _app(100)}, 80) == 4
    assert model.replicas == {"b": 2}


def test_replica_model_with_fast_downscale_gives_replicas_back() -> None:
    model = ReplicaModel(load_replicas=4)
    model.replicas = {"a": 4}
    apps = {"a": _app(50, down=30), "b": _app(50, down=30)}
    model.advance(apps, 0)
    model.advance(apps, 30)
    assert model.replicas == {"a": 2, "b": 2}


def _sample(verb: str, resource: str, value: int, subresource: str = "", group: str = "lmops.io") -> str:
    labels = (
        f'code="200",component="apiserver",dry_run="",group="{group}",resource="{resource}",'
        f'scope="resource",subresource="{subresource}",verb="{verb}",version="v1"'
    )
    return f"apiserver_request_total{{{labels}}} {value}"


METRICS = "\n".join(
    [
        "# HELP apiserver_request_total [STABLE] Counter of apiserver requests",
        _sample("POST", "languagemodels", 5),
        _sample("PATCH", "languagemodels", 7, subresource="status"),
        _sample("PATCH", "languagemodels", 1),
        _sample("PUT", "leases", 30, group=""),
        _sample("GET", "", 3, subresource="/metrics", group=""),
        'apiserver_request_duration_seconds_bucket{verb="GET",le="0.1"} 99',
    ]
)


def test_parse_request_totals_sums_by_verb_and_resource() -> None:
    totals = parse_request_totals(METRICS)
    assert totals[("PATCH", "languagemodels")] == 8
    assert totals[("POST", "languagemodels")] == 5
    assert totals[("PUT", "leases")] == 30
    assert sum(totals.values()) == 5 + 8 + 30 + 3


def test_operator_requests_subtract_our_own_and_ignore_background() -> None:
    before = Counter({("POST", "languagemodels"): 1, ("PUT", "leases"): 10, ("GET", "rayservices"): 2})
    after = Counter(
        {
            ("POST", "languagemodels"): 6,
            ("PUT", "leases"): 40,
            ("GET", "rayservices"): 9,
            ("APPLY", "rayservices"): 5,
        }
    )
    own = Counter({("POST", "languagemodels"): 5})
    delta = operator_requests(before, after, own)
    assert delta == Counter({("GET", "rayservices"): 7, ("APPLY", "rayservices"): 5})
    assert writes(delta) == Counter({("APPLY", "rayservices"): 5})


def test_owned_copy_moves_the_object_and_its_owner() -> None:
    obj = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "m1",
            "namespace": "a",
            "labels": {"x": "y"},
            "ownerReferences": [{"name": "m1", "uid": "old", "controller": True}],
        },
        "spec": {"ports": [{"port": 8000}]},
    }
    copied = owned_copy(obj, "b", "new")
    assert copied["metadata"] == {
        "name": "m1",
        "namespace": "b",
        "labels": {"x": "y"},
        "ownerReferences": [{"name": "m1", "uid": "new", "controller": True}],
    }
    assert copied["spec"] == obj["spec"]
    assert obj["metadata"]["namespace"] == "a"  # the planner's object is left alone


def test_rss_bar_is_150_mib_plus_150_kib_per_model() -> None:
    assert rss_budget_mib(0) == 150
    assert rss_budget_mib(1024) == 300


def test_canary_walk_through_the_planner_holds_less_than_a_second_cluster() -> None:
    """The API's default canary (10 %, 50 %) with replicas following load: the stable keeps R replicas (its
    600 s downscale delay outlasts the rollout) and the canary grows to ceil(50 % x R)."""
    from bench.rollout import walk_canary

    walk = walk_canary(replicas=4, gpus=2, scenario="autoscaled")
    assert walk["canary_weights"] == [10, 50]
    assert walk["before_gpus"] == 8
    assert walk["peak_gpus"] == (4 + 2) * 2
    assert walk["kuberay_gpus"] == 16
    fixed = walk_canary(replicas=4, gpus=2, scenario="fixed")
    assert fixed["peak_gpus"] == 16
