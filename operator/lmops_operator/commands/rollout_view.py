"""What ``lmops rollout`` shows and restores, wherever the model runs: a rollout described from spec and
status, revision history lines, and the spec patch that undoes to an earlier revision. Pure, so the cluster
commands (``rollout``) and the local ones (``rollout_local``) share it and tests call it directly.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from lmops_operator.api import LanguageModelSpec, LanguageModelStatus
from lmops_operator.api.changes import get_path, set_path, submodel
from lmops_operator.api.rules import Rule
from lmops_operator.names import REVISION_LABEL
from lmops_operator.planning.revision import REVISION_FIELDS, revision_name

EXIT_FAILED = 1


WATCH_PERIOD_S = 2.0


class RolloutError(Exception):
    """Printed as ``lmops rollout: message`` with exit code 1."""


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
    older = [r for r in revisions if revision_label(r) != current]
    if not older:
        raise RolloutError("no earlier revision to go back to")
    return max(older, key=lambda r: int(r.get("revision") or 0))


def revision_label(obj: Mapping[str, Any]) -> str:
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


def parse_object(obj: Mapping[str, Any]) -> tuple[LanguageModelSpec, LanguageModelStatus]:
    spec = LanguageModelSpec.model_validate(obj.get("spec") or {})
    try:
        status = LanguageModelStatus.model_validate(obj.get("status") or {})
    except ValueError:
        status = LanguageModelStatus()
    return spec, status


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


def history_lines(rows: Sequence[tuple[int, str, str, str]], status: LanguageModelStatus) -> list[str]:
    """The table of ``lmops rollout history``: (number, revision, created, source) rows, roles from status."""
    lines = [f"{'REVISION':<9} {'NAME':<12} {'ROLE':<8} {'CREATED':<21} SOURCE"]
    for number, rev, created, source in rows:
        role = {status.stable_revision: "stable", status.canary_revision: "canary"}.get(rev, "")
        if not role and rev == status.fallback_revision:
            role = "warm"
        lines.append(f"{number:<9} {rev:<12} {role:<8} {created:<21} {source}")
    return lines


def undo_patch(
    spec: Mapping[str, Any], revisions: Sequence[Mapping[str, Any]], to_revision: int | None
) -> tuple[Mapping[str, Any], dict[str, Any] | None]:
    """The ControllerRevision-shaped revision to restore and the merge patch that restores it into ``spec``
    (None when the spec is at that revision already)."""
    current = revision_name(LanguageModelSpec.model_validate(spec))
    chosen = pick_revision(revisions, current, to_revision)
    wanted = revision_label(chosen)
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
