"""``lmops rollout status|promote|abort|restart|undo|history NAME``: kubectl-style rollout controls.

Everything goes through the API server with the current kubeconfig, and only through what ``kubectl`` can
do as well: promote/abort/restart set a control annotation (``lmops.io/promote`` ...) that the operator
acts on once and removes; ``undo`` writes an earlier revision's fields (those whose change cost is a new
revision) back into the spec from its ControllerRevision, which the operator then rolls out like any other
change.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from lmops_operator.api import LanguageModelSpec, LanguageModelStatus
from lmops_operator.api.annotations import ABORT, PROMOTE, RESTART, request_patch
from lmops_operator.api.changes import get_path, set_path, submodel
from lmops_operator.api.rules import Rule
from lmops_operator.names import MODEL_LABEL, REVISION_LABEL
from lmops_operator.planning.revision import REVISION_FIELDS, revision_name

EXIT_FAILED = 1
WATCH_PERIOD_S = 2.0


class RolloutError(Exception):
    """Printed as ``lmops rollout: message`` with exit code 1."""


# ---- pure helpers (unit-tested) ------------------------------------------------------------------------


def spec_patch_from_revision(data: Mapping[str, Any]) -> dict[str, Any]:
    """JSON merge patch restoring a revision's spec fields from its ControllerRevision ``data``.

    The inverse of ``planning.revision.revision_data``, from the same change-cost tags: every revision
    field is read back from where it is stored (null where the revision left it unset, so the merge patch
    removes it; a section the data lacks, as in older revisions, is left alone). A value the revision
    stores but the spec may not hold by one of its rules (``numBeams`` outside strategy beam) is null.
    """
    spec: dict[str, Any] = {}
    for tagged in REVISION_FIELDS:
        assert tagged.stored_as is not None  # api.changes.cost requires it for revision fields
        if not data.get(tagged.stored_as.split(".")[0]):
            continue
        value = get_path(data, tagged.stored_as)
        if value is not None and tagged.per is not None:
            value = round(float(value) * tagged.per)
        set_path(spec, tagged.alias_path, value)
    _drop_disallowed(LanguageModelSpec, spec)
    return {"spec": spec}


def _drop_disallowed(model: type[BaseModel], values: dict[str, Any]) -> None:
    """Null the fields of ``values`` (camelCase, nested) that an ``only_if`` rule of ``model`` forbids."""
    for name, info in model.model_fields.items():
        alias = info.alias or name
        child = submodel(info.annotation)
        if child is not None and isinstance(values.get(alias), dict):
            _drop_disallowed(child, values[alias])
    rules: tuple[Rule, ...] = getattr(model, "rules", ())
    plain = {
        name: values[info.alias or name]
        for name, info in model.model_fields.items()
        if not isinstance(values.get(info.alias or name), dict) and (info.alias or name) in values
    }
    instance = model.model_construct(**plain)
    for rule in rules:
        if rule.subject is not None and rule.subject in values and not rule.holds(instance):
            values[rule.subject] = None


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


def _parse(obj: Mapping[str, Any]) -> tuple[LanguageModelSpec, LanguageModelStatus]:
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


def cmd_status(args: argparse.Namespace) -> int:
    kube, namespace = _connect(args)
    deadline = time.monotonic() + args.timeout
    last: list[str] = []
    while True:
        spec, status = _parse(_get(kube, namespace, args.name))
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
        time.sleep(WATCH_PERIOD_S)


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


def cmd_history(args: argparse.Namespace) -> int:
    kube, namespace = _connect(args)
    _, status = _parse(_get(kube, namespace, args.name))
    revisions = _controller_revisions(kube, namespace, args.name)
    if not revisions:
        print(f"no revisions recorded for {args.name}")
        return 0
    print(f"{'REVISION':<9} {'NAME':<12} {'ROLE':<8} {'CREATED':<21} SOURCE")
    for obj in revisions:
        rev = _revision_name(obj)
        role = {status.stable_revision: "stable", status.canary_revision: "canary"}.get(rev, "")
        if not role and rev == status.fallback_revision:
            role = "warm"
        created = str((obj.get("metadata") or {}).get("creationTimestamp", ""))
        source = ((obj.get("data") or {}).get("model") or {}).get("source", "")
        print(f"{obj.get('revision', ''):<9} {rev:<12} {role:<8} {created:<21} {source}")
    return 0


def cmd_undo(args: argparse.Namespace) -> int:
    from lmops_operator.k8s.resources import LANGUAGE_MODEL

    kube, namespace = _connect(args)
    obj = _get(kube, namespace, args.name)
    spec, _ = _parse(obj)
    current = revision_name(spec)
    chosen = pick_revision(_controller_revisions(kube, namespace, args.name), current, args.to_revision)
    wanted = _revision_name(chosen)
    if wanted == current:
        print(f"languagemodel.lmops.io/{args.name} already at revision {chosen.get('revision')} ({wanted})")
        return 0
    patch = spec_patch_from_revision(chosen.get("data") or {})
    restored = LanguageModelSpec.model_validate(apply_merge_patch(obj.get("spec") or {}, patch["spec"]))
    if revision_name(restored) != wanted:
        raise RolloutError(
            f"restoring revision {chosen.get('revision')} would give revision {revision_name(restored)}, not "
            f"{wanted}: its ControllerRevision was written by another operator version"
        )
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


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("rollout", help="watch and steer rollouts (like kubectl rollout)")
    parser.set_defaults(handler=lambda _: parser.print_help() or 2)
    sub = parser.add_subparsers(dest="rollout_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("name", help="LanguageModel name")
        p.add_argument("-n", "--namespace", default=None, help="namespace (default: the kubeconfig's)")
        p.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: $KUBECONFIG or ~/.kube)")

    status = sub.add_parser("status", help="show rollout progress; -w follows it until it finishes")
    common(status)
    status.add_argument("-w", "--watch", action="store_true", help="follow until promoted or aborted")
    status.add_argument("--timeout", type=float, default=3600.0, help="seconds to watch (default 3600)")
    status.set_defaults(handler=_guarded(cmd_status))
    for verb, key, text in (
        ("promote", PROMOTE, "skip the remaining canary steps (forces an aborted rollout through)"),
        ("abort", ABORT, "send all traffic back to the stable revision and stop the rollout"),
        ("restart", RESTART, "run an aborted rollout again from its first step"),
    ):
        p = sub.add_parser(verb, help=text)
        common(p)
        p.set_defaults(handler=_guarded(_control(key, verb)))
    history = sub.add_parser("history", help="list the recorded revisions")
    common(history)
    history.set_defaults(handler=_guarded(cmd_history))
    undo = sub.add_parser("undo", help="roll back to the previous (or a given) revision's model")
    common(undo)
    undo.add_argument("--to-revision", type=int, default=None, help="revision number (see history)")
    undo.set_defaults(handler=_guarded(cmd_undo))
