"""The operator benchmark's report: the markdown tables and the plots of one run's results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.common import (
    fmt,
    markdown_table,
    ratio,
)


def render(data: dict[str, Any]) -> tuple[str, list[str]]:
    rows = []
    detail = []
    notes = []
    for key, r in data["sizes"].items():
        floor = r["floor"]
        rows.append(
            [
                key,
                fmt(r["converge_s"]),
                fmt(floor["create_s"]),
                fmt(ratio(r["converge_s"], floor["create_s"]), 2),
                fmt(r["ready_s"]),
                fmt(r["requests_per_model"]),
                fmt(r["requests_per_reconcile"]),
                fmt(r["reconciles"] / int(key)),
                f"{r['peak_rss_bytes'] / 2**20:.0f}",
                str(r["resync_writes_total"]),
                fmt(r["resync_s"]),
            ]
        )
        detail.append(
            [
                key,
                ", ".join(f"{k}: {v}" for k, v in r["requests"].items()),
                ", ".join(f"{k}: {v}" for k, v in r["resync_requests"].items()) or "none",
            ]
        )
        for flag, phase in (
            ("went_quiet", "after the models became Ready"),
            ("resync_went_quiet", "after the resync"),
        ):
            if not r.get(flag, True):
                notes.append(f"N={key}: API requests never stopped {phase} (the operator kept polling)")
        if r["resync_writes_total"]:
            notes.append(
                f"N={key}: {r['resync_writes_total']} writes during the forced resync: {r['resync_writes']}"
            )
    table = markdown_table(
        [
            "N",
            "operator: all current s",
            "floor: N RayServices created s",
            "ratio",
            "RUNNING -> all Ready s",
            "API requests / model",
            "API requests / reconcile",
            "reconciles / model",
            "operator peak RSS MiB",
            "writes in forced resync",
            "resync s",
        ],
        rows,
    )
    breakdown = markdown_table(
        ["N", "operator requests while converging", "requests during the forced resync"], detail
    )
    body = "\n\n".join(
        [
            "Operator: `lmops operator run`'s code in its own process, watching one namespace, against a "
            'real kube-apiserver + etcd + kube-controller-manager. "All current" is the time from the first '
            "create until every LanguageModel has its RayService and `status.observedGeneration == "
            "metadata.generation`. No KubeRay runs here: the benchmark then reports every RayService's Serve "
            "applications RUNNING (a status patch, as KubeRay would write it) and times until every model is "
            "Ready. The floor is one client creating the operator's N RayServices directly on the same API "
            "server, one request each. API requests are the API server's own `apiserver_request_total`, less "
            "the benchmark's own (its creates, status patches and watches) and less what the operator never "
            "does (leases, endpoints, the ClusterIP addresses the API server allocates); they cover creation "
            "through Ready. Peak RSS is the operator process's VmHWM. The forced resync is an operator "
            "restart: every model listed and reconciled again with nothing changed.",
            table,
            "API requests by verb and resource:",
            breakdown,
        ]
    )
    return body + "\n", notes


def plot(data: dict[str, Any], img_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = list(data["sizes"])
    xs = [int(s) for s in sizes]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.plot(xs, [data["sizes"][s]["converge_s"] for s in sizes], marker="o", label="operator: all N current")
    ax.plot(
        xs,
        [data["sizes"][s]["floor"]["create_s"] for s in sizes],
        marker="o",
        label="floor: create N RayServices",
    )
    ax.set_xlabel("LanguageModels (N)")
    ax.set_ylabel("seconds")
    ax.set_title("Operator at scale vs. creating the RayServices directly")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    img_dir.mkdir(parents=True, exist_ok=True)
    fig.savefig(img_dir / "operator-scale.png", dpi=110)
    plt.close(fig)
    return ["img/operator-scale.png"]
