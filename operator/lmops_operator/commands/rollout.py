"""``lmops rollout status|promote|abort|restart|undo|history NAME``: kubectl-style rollout controls.

On a cluster everything goes through the API server with the current kubeconfig, and only through what
``kubectl`` can do as well: promote/abort/restart set a control annotation (``lmops.io/promote`` ...) that
the operator acts on once and removes; ``undo`` writes an earlier revision's model, serving and resource
fields back into the spec from its ControllerRevision, which the operator then rolls out like any other
change. The model ``lmops up`` serves gets the same commands from ``rollout_local``; ``_either`` picks.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lmops_operator.api import LanguageModelSpec, LanguageModelStatus, ModelSpec
from lmops_operator.api.annotations import ABORT, PROMOTE, RESTART, read_controls, request_patch
from lmops_operator.planning.names import MODEL_LABEL, REVISION_LABEL

EXIT_FAILED = 1
WATCH_PERIOD_S = 2.0
_MODEL_FIELDS = [str(field.alias or name) for name, field in ModelSpec.model_fields.items()]


class RolloutError(Exception):
    """Printed as ``lmops rollout: message`` with exit code 1."""


# ---- pure helpers (unit-tested) ------------------------------------------------------------------------


def spec_patch_from_revision(data: Mapping[str, Any]) -> dict[str, Any]:
    """JSON merge patch restoring a revision's spec fields from its ControllerRevision ``data``.

    ``data`` is ``planning.revision.revision_data`` of the old spec: the runtime ModelSpec, batching and
    per-replica resources. Model fields absent from it are set to null so the merge patch removes them.
    """
    model = dict(data["model"])
    generation = dict(model.pop("generation", {}) or {})
    strategy = generation.get("strategy", "greedy")
    gen_patch: dict[str, Any] = {
        "strategy": strategy,
        "temperature": generation.get("temperature", 1.0),
        "maxNewTokens": generation.get("max_new_tokens", 128),
        "topK": generation.get("top_k") if strategy == "sample" else None,
        "topP": generation.get("top_p") if strategy == "sample" else None,
        "numBeams": generation.get("num_beams") if strategy == "beam" else None,
    }
    model_patch: dict[str, Any] = dict.fromkeys(_MODEL_FIELDS)
    camel = {
        "max_sequence_length": "maxSequenceLength",
        "trust_remote_code": "trustRemoteCode",
    }
    for key, value in model.items():
        model_patch[camel.get(str(key), str(key))] = value
    model_patch["generation"] = gen_patch
    patch: dict[str, Any] = {"spec": {"model": model_patch}}
    batching = data.get("batching") or {}
    if batching:
        patch["spec"]["serving"] = {
            "maxBatchSize": batching["max_batch_size"],
            "batchWaitTimeoutMilliseconds": round(float(batching["batch_wait_timeout_s"]) * 1000),
        }
    resources = data.get("resources") or {}
    if resources:
        patch["spec"]["runtime"] = {k: resources[k] for k in ("cpu", "memory", "gpus") if k in resources}
    return patch


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (what the API server does with the patch above)."""
    if not isinstance(patch, Mapping):
        return patch
    out = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = apply_merge_patch(out.get(key), value)
    return out


def pick_revision(
    revisions: Sequence[Mapping[str, Any]], current: str | None, to_revision: int | None
) -> Mapping[str, Any]:
    """The ControllerRevision to restore: number ``to_revision``, else the newest other than ``current``."""
    if to_revision is not None:
        for obj in revisions:
            if obj.get("revision") == to_revision:
                return obj
        raise RolloutError(f"revision {to_revision} not found (see `lmops rollout history`)")
    older = [r for r in revisions if _revision_name(r) != current]
    if not older:
        raise RolloutError("no earlier revision to go back to")
    return max(older, key=lambda r: int(r.get("revision") or 0))


def _revision_name(obj: Mapping[str, Any]) -> str:
    return str(((obj.get("metadata") or {}).get("labels") or {}).get(REVISION_LABEL, ""))


def describe(name: str, spec: LanguageModelSpec, status: LanguageModelStatus) -> list[str]:
    """The lines of ``lmops rollout status``."""
    lines = [f"{name}: phase {status.phase or 'Unknown'}"]
    lines.append(f"  stable:  {status.stable_revision or '-'}")
    if status.canary_revision:
        lines.append(f"  canary:  {status.canary_revision} at {status.canary_weight or 0}%")
    if status.fallback_revision:
        lines.append(f"  warm:    {status.fallback_revision} (weight 0)")
    traffic = ", ".join(f"{t.revision} {t.weight}%" for t in status.traffic or [])
    if traffic:
        lines.append(f"  traffic: {traffic}")
    ro = status.rollout
    if ro is not None:
        steps = spec.rollout.steps
        where = ""
        if ro.state == "Progressing" and spec.rollout.strategy == "Canary":
            where = f", step {min(ro.step, len(steps) - 1) + 1}/{len(steps)}"
        lines.append(
            f"  rollout: {ro.revision} {ro.state}{where}, failed checks "
            f"{ro.failed_checks}/{spec.rollout.analysis.failure_limit}"
        )
        if ro.abort_reason:
            lines.append(f"  reason:  {ro.abort_reason}")
        if ro.quality_gate is not None:
            lines.append(f"  quality: {ro.quality_gate.verdict}: {ro.quality_gate.message}")
    la = status.last_analysis
    if la is not None:
        p95 = f", p95 {la.p95_latency_milliseconds:.0f} ms" if la.p95_latency_milliseconds is not None else ""
        limits = f"maxErrorRate {la.max_error_rate}" if la.max_error_rate is not None else ""
        if la.max_p95_latency_milliseconds is not None:
            limits += f", maxP95 {la.max_p95_latency_milliseconds} ms"
        lines.append(
            f"  analysis: {la.verdict} for {la.revision}: {la.requests} requests, "
            f"{la.error_rate:.1%} errors{p95} ({limits}) - {la.message}"
        )
    for cond in status.conditions or []:
        if (cond.status == "True") != (cond.type == "Ready"):
            lines.append(f"  {cond.type}={cond.status} {cond.reason}: {cond.message}")
    return lines


def finished(spec: LanguageModelSpec, status: LanguageModelStatus) -> tuple[bool, bool]:
    """(done, succeeded) for ``status -w``, as ``kubectl rollout status`` ends."""
    ro = status.rollout
    if ro is not None and ro.state in ("Aborted", "Paused"):
        return True, False
    if status.phase == "Failed":
        return True, False
    done = ro is None and status.canary_revision is None and status.phase in ("Ready", "ScaledToZero")
    return done, done


# ---- talking to the cluster ----------------------------------------------------------------------------


def _connect(args: argparse.Namespace) -> tuple[Any, str]:
    from kubernetes import config as k8s_config

    from lmops_operator.k8s.client import Kube, api_client_from_kubeconfig

    namespace = args.namespace
    if namespace is None:
        try:
            _, active = k8s_config.list_kube_config_contexts(config_file=args.kubeconfig)  # type: ignore[no-untyped-call]
            namespace = (active or {}).get("context", {}).get("namespace")
        except (k8s_config.ConfigException, OSError, TypeError):
            namespace = None
    return Kube(api_client_from_kubeconfig(args.kubeconfig)), namespace or "default"


def _get(kube: Any, namespace: str, name: str) -> dict[str, Any]:
    from lmops_operator.k8s.resources import LANGUAGE_MODEL

    obj = kube.get(LANGUAGE_MODEL.item(namespace, name))
    if obj is None:
        raise RolloutError(f"languagemodel {namespace}/{name} not found")
    result: dict[str, Any] = obj
    return result


def parse_object(obj: Mapping[str, Any]) -> tuple[LanguageModelSpec, LanguageModelStatus]:
    spec = LanguageModelSpec.model_validate(obj.get("spec") or {})
    try:
        status = LanguageModelStatus.model_validate(obj.get("status") or {})
    except ValueError:
        status = LanguageModelStatus()
    return spec, status


def _controller_revisions(kube: Any, namespace: str, name: str) -> list[dict[str, Any]]:
    from lmops_operator.k8s.resources import CONTROLLER_REVISION

    items: list[dict[str, Any]] = kube.list(
        CONTROLLER_REVISION.collection(namespace), label_selector=f"{MODEL_LABEL}={name}"
    )
    return sorted(items, key=lambda r: int(r.get("revision") or 0))


def watch_status(
    args: argparse.Namespace,
    read: Callable[[], tuple[LanguageModelSpec, LanguageModelStatus]],
    wait: Callable[[], None],
) -> int:
    """Print the status (again whenever it changes, with -w) until the rollout ends or ``--timeout``."""
    deadline = time.monotonic() + args.timeout
    last: list[str] = []
    while True:
        spec, status = read()
        lines = describe(args.name, spec, status)
        if lines != last:
            if args.watch and last:
                print()
            print("\n".join(lines), flush=True)
            last = lines
        done, ok = finished(spec, status)
        if not args.watch:
            return 0
        if done:
            return 0 if ok else EXIT_FAILED
        if time.monotonic() > deadline:
            print(f"still progressing after {args.timeout:.0f} s", file=sys.stderr)
            return EXIT_FAILED
        wait()


def cmd_status(args: argparse.Namespace) -> int:
    kube, namespace = _connect(args)
    return watch_status(
        args, lambda: parse_object(_get(kube, namespace, args.name)), lambda: time.sleep(WATCH_PERIOD_S)
    )


def _control(key: str, verb: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from lmops_operator.k8s.resources import LANGUAGE_MODEL

        kube, namespace = _connect(args)
        _get(kube, namespace, args.name)
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        kube.merge_patch(LANGUAGE_MODEL.item(namespace, args.name), request_patch(key, stamp))
        print(f"languagemodel.lmops.io/{args.name} {verb} requested ({key})")
        return 0

    return run


def history_lines(rows: Sequence[tuple[int, str, str, str]], status: LanguageModelStatus) -> list[str]:
    """The table of ``lmops rollout history``: (number, revision, created, source) rows, roles from status."""
    lines = [f"{'REVISION':<9} {'NAME':<12} {'ROLE':<8} {'CREATED':<21} SOURCE"]
    for number, rev, created, source in rows:
        role = {status.stable_revision: "stable", status.canary_revision: "canary"}.get(rev, "")
        if not role and rev == status.fallback_revision:
            role = "warm"
        lines.append(f"{number:<9} {rev:<12} {role:<8} {created:<21} {source}")
    return lines


def cmd_history(args: argparse.Namespace) -> int:
    kube, namespace = _connect(args)
    _, status = parse_object(_get(kube, namespace, args.name))
    revisions = _controller_revisions(kube, namespace, args.name)
    if not revisions:
        print(f"no revisions recorded for {args.name}")
        return 0
    rows = [
        (
            int(obj.get("revision") or 0),
            _revision_name(obj),
            str((obj.get("metadata") or {}).get("creationTimestamp", "")),
            str(((obj.get("data") or {}).get("model") or {}).get("source", "")),
        )
        for obj in revisions
    ]
    print("\n".join(history_lines(rows, status)))
    return 0


def undo_patch(
    spec: Mapping[str, Any], revisions: Sequence[Mapping[str, Any]], to_revision: int | None
) -> tuple[Mapping[str, Any], dict[str, Any] | None]:
    """The ControllerRevision-shaped revision to restore and the merge patch that restores it into ``spec``
    (None when the spec is at that revision already)."""
    from lmops_operator.planning.revision import revision_name

    current = revision_name(LanguageModelSpec.model_validate(spec))
    chosen = pick_revision(revisions, current, to_revision)
    wanted = _revision_name(chosen)
    if wanted == current:
        return chosen, None
    patch = spec_patch_from_revision(chosen.get("data") or {})
    restored = LanguageModelSpec.model_validate(apply_merge_patch(spec, patch["spec"]))
    if revision_name(restored) != wanted:
        raise RolloutError(
            f"restoring revision {chosen.get('revision')} would give revision {revision_name(restored)}, not "
            f"{wanted}: its ControllerRevision was written by another operator version"
        )
    return chosen, patch


def cmd_undo(args: argparse.Namespace) -> int:
    from lmops_operator.k8s.resources import LANGUAGE_MODEL

    kube, namespace = _connect(args)
    obj = _get(kube, namespace, args.name)
    revisions = _controller_revisions(kube, namespace, args.name)
    chosen, patch = undo_patch(obj.get("spec") or {}, revisions, args.to_revision)
    wanted = _revision_name(chosen)
    if patch is None:
        print(f"languagemodel.lmops.io/{args.name} already at revision {chosen.get('revision')} ({wanted})")
        return 0
    kube.merge_patch(LANGUAGE_MODEL.item(namespace, args.name), patch)
    print(f"languagemodel.lmops.io/{args.name} rolled back to revision {chosen.get('revision')} ({wanted})")
    return 0


def _guarded(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from lmops_operator.k8s.client import KubeError

        try:
            return fn(args)
        except (RolloutError, KubeError, ValueError) as exc:
            print(f"lmops rollout: {exc}", file=sys.stderr)
            return EXIT_FAILED
        except KeyboardInterrupt:
            return 130

    return run


def _either(
    cluster: Callable[[argparse.Namespace], int], local: Callable[[argparse.Namespace], int]
) -> Callable[[argparse.Namespace], int]:
    """The local model's command when ``rollout_local.local_model`` picks it, else the cluster's."""

    def run(args: argparse.Namespace) -> int:
        from lmops_operator.commands import rollout_local
        from lmops_operator.commands.errors import NO_KUBECONFIG, explain

        if rollout_local.local_model(args) is not None:
            return local(args)
        if args.kubeconfig is not None and not Path(args.kubeconfig).is_file():
            raise RolloutError(f"{args.kubeconfig}: no such kubeconfig file")
        try:
            return cluster(args)
        except Exception as exc:
            if explain(exc) != NO_KUBECONFIG or args.kubeconfig is not None:
                raise
            raise RolloutError(
                f"{NO_KUBECONFIG}; no local model named {args.name} runs either (`lmops up FILE` serves one)"
            ) from None

    return _guarded(run)


def _local_control(verb: str, key: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from lmops_operator.commands import rollout_local

        return rollout_local.control(args, read_controls({key: verb}), verb)

    return run


def _local(name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from lmops_operator.commands import rollout_local

        handler: Callable[[argparse.Namespace], int] = getattr(rollout_local, name)
        return handler(args)

    return run


DESCRIPTION = """Follow and steer a LanguageModel's rollout, as `kubectl rollout` does for a Deployment.

Where: the model `lmops up` serves on this machine when one of that name runs and neither --kubeconfig
nor --namespace is given (or with --local); otherwise the cluster of the kubeconfig ($KUBECONFIG,
~/.kube/config), where promote, abort and restart set an annotation the operator acts on. Locally there
is no operator running, so they act at once and follow the rollout to its end, printing each step
(handed to `lmops up` instead while it rolls the model out); status -w carries on a rollout nobody drives."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "rollout",
        help="follow and steer rollouts, on a cluster or on this machine (like kubectl rollout)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=lambda _: parser.print_help() or 2)
    sub = parser.add_subparsers(dest="rollout_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("name", help="LanguageModel name")
        p.add_argument("-n", "--namespace", default=None, help="namespace (default: the kubeconfig's)")
        p.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: $KUBECONFIG or ~/.kube)")
        p.add_argument(
            "--local",
            action="store_true",
            help="the model `lmops up` serves on this machine (the default when one of that name runs and "
            "neither --kubeconfig nor --namespace is given)",
        )

    status = sub.add_parser("status", help="show rollout progress; -w follows it until it finishes")
    common(status)
    status.add_argument("-w", "--watch", action="store_true", help="follow until promoted or aborted")
    status.add_argument("--timeout", type=float, default=3600.0, help="seconds to watch (default 3600)")
    status.set_defaults(handler=_either(cmd_status, _local("status")))
    for verb, key, text in (
        ("promote", PROMOTE, "skip the remaining canary steps (forces an aborted rollout through)"),
        ("abort", ABORT, "send all traffic back to the stable revision and stop the rollout"),
        ("restart", RESTART, "run an aborted rollout again from its first step"),
    ):
        p = sub.add_parser(verb, help=text)
        common(p)
        p.set_defaults(handler=_either(_control(key, verb), _local_control(verb, key)))
    history = sub.add_parser("history", help="list the recorded revisions")
    common(history)
    history.set_defaults(handler=_either(cmd_history, _local("history")))
    undo = sub.add_parser("undo", help="roll back to the previous (or a given) revision's model")
    common(undo)
    undo.add_argument("--to-revision", type=int, default=None, help="revision number (see history)")
    undo.set_defaults(handler=_either(cmd_undo, _local("undo")))
