"""The rollout benchmark's report: the markdown tables and the plots of one run's results."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.common import (
    fmt,
    markdown_table,
    median,
)


def render(data: dict[str, Any]) -> tuple[str, list[str]]:
    rows = []
    for walk in data["walks"]:
        r, g = walk["replicas"], walk["gpus_per_replica"]
        rows.append(
            [
                f"{r} x {g}",
                _autoscaling_label(walk["autoscaling"]),
                str(walk["before_gpus"]),
                str(walk["peak_gpus"]),
                str(walk["kuberay_gpus"]),
                fmt(walk["peak_gpus"] / walk["kuberay_gpus"], 2),
                str(walk["cluster_max_gpus"]),
                fmt(walk["rollout_s"]),
            ]
        )
    table = markdown_table(
        [
            "replicas x GPUs",
            "autoscaling",
            "GPUs before",
            "lmops canary peak GPUs",
            "KubeRay NewCluster GPUs (2RG)",
            "lmops / KubeRay",
            "worker group cap GPUs",
            "rollout s (simulated)",
        ],
        rows,
    )
    parts = [
        "GPUs held during a canary rollout (the API's default steps, 10 % then 50 %, 60 s each), from the "
        "planner's serve config at every reconcile, with replicas per revision following Serve's autoscaling "
        "rule on the revision's traffic share of a load that needs R replicas (upscale delay 30 s and "
        "downscale delay 600 s unless the row says otherwise: the API's defaults). With min = max = R every "
        "revision's application holds R replicas whatever its weight. The worker group cap is the "
        "RayService's maxReplicas x G: what the Ray autoscaler may grow the cluster to.",
        table,
    ]
    notes: list[str] = []
    rollback = data.get("rollback")
    if rollback:
        trials = rollback["trials"]
        rows2 = [
            [
                str(i + 1),
                fmt(t["first_traffic_to_rollback_s"]),
                fmt(t["apply_to_rollback_s"]),
                "/".join(str(w) for w in t["canary_weights"]),
                str(t["requests_sent"]),
                str(t["requests_failed"]),
            ]
            for i, t in enumerate(trials)
        ]
        rows2.append(
            [
                "median",
                fmt(median(t["first_traffic_to_rollback_s"] for t in trials)),
                fmt(median(t["apply_to_rollback_s"] for t in trials)),
                "",
                str(sum(t["requests_sent"] for t in trials)),
                str(sum(t["requests_failed"] for t in trials)),
            ]
        )
        parts += [
            f"Rolling back a failing canary on a local Ray (the local reconciler: the operator's planner "
            f"pieces), {rollback['clients']} clients sending completions without pause, analysis every "
            f"{rollback['analysis_interval_s']} s, failure limit 1. The canary loads and passes its health "
            "check but fails every real request. Times: from the reconcile that first gave the canary "
            "traffic to the one that deployed the serve config without it (the Router then sends it "
            "nothing), and from applying the new spec until then (mostly the canary's replica starting and "
            "loading the model). Failed client requests are responses other than 200 seen by the clients: "
            "the Router retries a call that failed on the canary on the stable revision.",
            markdown_table(
                [
                    "trial",
                    "first canary traffic -> rollback s",
                    "apply -> rollback s",
                    "canary weights seen %",
                    "client requests",
                    "failed client requests",
                ],
                rows2,
            ),
        ]
        if rollback["requests_failed"]:
            notes.append(f"failed client requests during rollback: {rollback['failures']}")
    else:
        notes.append("the local rollback part was not run")
    return "\n\n".join(parts) + "\n", notes


def _autoscaling_label(autoscaling: Mapping[str, int]) -> str:
    label = f"{autoscaling['minReplicas']}..{autoscaling['maxReplicas']} replicas"
    if "downscaleDelaySeconds" in autoscaling:
        label += f", downscale delay {autoscaling['downscaleDelaySeconds']} s"
    return label


def plot(data: dict[str, Any], img_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.8))
    for walk in data["walks"]:
        if walk["scenario"] != "autoscaled":
            continue
        ts = [p["t"] - walk["timeline"][0]["t"] for p in walk["timeline"]]
        line = ax.step(
            ts, [p["gpus"] for p in walk["timeline"]], where="post", label=f"lmops, R={walk['replicas']}"
        )
        ax.axhline(walk["kuberay_gpus"], color=line[0].get_color(), ls="--", lw=0.8)
    ax.set_xlabel("seconds since the new revision was applied (simulated)")
    ax.set_ylabel("GPUs held")
    ax.set_title(f"Canary rollout, G={data['gpus_per_replica']} (dashed: KubeRay NewCluster 2RG)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    img_dir.mkdir(parents=True, exist_ok=True)
    fig.savefig(img_dir / "rollout-gpus.png", dpi=110)
    plt.close(fig)
    return ["img/rollout-gpus.png"]
