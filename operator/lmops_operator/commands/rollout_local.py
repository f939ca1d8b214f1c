"""``lmops rollout`` on the model ``lmops up`` serves: the same controls, on local mode's state file.

The state file holds what the API server holds on a cluster (the object, its status, its revisions), so
``status`` and ``history`` read it, and ``undo`` restores a revision's fields into the recorded spec as it
would into the object. On a cluster the operator then acts; locally the loop runs only inside a command
(``local.controls``), so a control that changes traffic drives the loop itself, printing each step as
``lmops up`` does, until the rollout settles, unless an ``lmops up`` drives it right now: promote, abort and
restart are then handed to it, and undo waits for it to end.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from lmops_operator.api.annotations import Controls
from lmops_operator.commands.rollout_view import (
    EXIT_FAILED,
    WATCH_PERIOD_S,
    RolloutError,
    apply_merge_patch,
    describe,
    finished,
    history_lines,
    parse_object,
    undo_patch,
    watch_status,
)
from lmops_operator.local import controls as pending
from lmops_operator.local import state as store
from lmops_operator.names import REVISION_LABEL

# How long a control follows the rollout it set going (``lmops up``'s default timeout).
FOLLOW_TIMEOUT_S = 900.0


def local_model(args: argparse.Namespace) -> store.LocalState | None:
    """The local model the command acts on, or None for the cluster.

    ``--local`` asks for the local model; ``--kubeconfig`` or ``--namespace`` for a cluster; with neither, the
    local model is chosen when ``lmops up`` serves one of that name.
    """
    if not args.local and (args.kubeconfig is not None or args.namespace is not None):
        return None
    state = store.load()
    if state is not None and state.name == args.name:
        return state
    if not args.local:
        return None
    if state is None:
        raise RolloutError(f"no local model runs: `lmops up FILE` serves {args.name} on this machine")
    raise RolloutError(f"the local model is {state.name}, not {args.name}")


def _loaded(name: str) -> tuple[store.LocalState, Any, Any]:
    state = store.load()
    if state is None or state.name != name:
        raise RolloutError(f"local model {name} is gone (stopped by `lmops down`?)")
    spec, status = parse_object({"spec": state.manifest.get("spec"), "status": state.status})
    return state, spec, status


def _reconciler() -> Any:
    """A reconciler attached to the local Ray that serves the model."""
    from lmops_runtime.local_env import use_local_token

    use_local_token()  # before ray is imported: the head admits lmops' token only
    import ray

    from lmops_operator.local.reconciler import LocalReconciler
    from lmops_runtime import local as runtime_local

    if runtime_local.connect_existing() is None:
        raise RolloutError(
            "the local Ray that served the model is gone (a reboot?): `lmops up FILE` starts it again"
        )
    gpus = int(ray.cluster_resources().get("GPU", 0))  # type: ignore[no-untyped-call]
    return LocalReconciler(local_gpus=gpus)


def _follow(name: str, controls: Controls | None, reconciler: Any = None) -> int:
    """Drive the loop (this process holds the lock) until the rollout settles; print steps, then status.

    Exit code 1 when the rollout ends aborted or paused, unless an abort was what was asked for."""
    from lmops_operator.commands.local import StepPrinter
    from lmops_operator.local.reconciler import LocalRolloutError

    try:
        (reconciler or _reconciler()).run(
            timeout_s=FOLLOW_TIMEOUT_S, on_step=StepPrinter(), controls=controls
        )
    except LocalRolloutError as exc:
        raise RolloutError(str(exc)) from None
    except KeyboardInterrupt:
        raise RolloutError(
            "interrupted; the stable revision keeps serving: `lmops rollout status -w "
            f"{name}` carries the rollout on"
        ) from None
    _, spec, status = _loaded(name)
    print("\n".join(describe(name, spec, status)))
    _, ok = finished(spec, status)
    return 0 if ok or (controls is not None and controls.abort) else EXIT_FAILED


def status(args: argparse.Namespace) -> int:
    """Print the rollout; with -w follow it to its end, driving the loop whenever no ``lmops up`` does."""
    path = store.state_path()
    driver: dict[str, Any] = {}  # the lock and the reconciler, once this watch drives the loop

    def read() -> tuple[Any, Any]:
        if "reconciler" in driver:
            driver["reconciler"].reconcile()
        _, spec, now = _loaded(args.name)
        return spec, now

    def wait() -> None:
        if "lock" not in driver and (lock := pending.acquire(path)) is not None:
            driver["lock"] = lock
            driver["reconciler"] = _reconciler()  # nobody else drives the rollout: this watch does
        time.sleep(1.0 if driver else WATCH_PERIOD_S)

    try:
        return watch_status(args, read, wait)
    finally:
        if "lock" in driver:
            pending.release(driver["lock"])


def control(args: argparse.Namespace, controls: Controls, verb: str) -> int:
    """promote, abort or restart: act now, or hand it to the ``lmops up`` that drives the rollout."""
    _loaded(args.name)
    path = store.state_path()
    with pending.driving(path) as mine:
        if not mine:
            pending.request(path, controls)
            print(f"{args.name}: {verb} requested; the `lmops up` rolling it out applies it")
            return 0
        print(f"{args.name}: {verb}", flush=True)
        return _follow(args.name, controls)


def history(args: argparse.Namespace) -> int:
    state, _, now = _loaded(args.name)
    rows = [
        (
            rev.number,
            name,
            rev.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            str(rev.data["model"].get("source")),
        )
        for name, rev in state.revisions.items()
    ]
    if not rows:
        print(f"no revisions recorded for {args.name}")
        return 0
    print("\n".join(history_lines(sorted(rows), now)))
    return 0


def undo(args: argparse.Namespace) -> int:
    """Write an earlier revision's fields back into the recorded spec, then roll that out."""
    state, _, _ = _loaded(args.name)
    revisions = [
        {"revision": rev.number, "metadata": {"labels": {REVISION_LABEL: name}}, "data": rev.data}
        for name, rev in state.revisions.items()
    ]
    path = store.state_path()
    with pending.driving(path) as mine:
        if not mine:
            raise RolloutError(
                f"`lmops up` is rolling {args.name} out right now: let it finish (or stop it with Ctrl-C), "
                "then undo"
            )
        chosen, patch = undo_patch(state.manifest.get("spec") or {}, revisions, args.to_revision)
        number, wanted = chosen.get("revision"), chosen["metadata"]["labels"][REVISION_LABEL]
        if patch is None:
            print(f"{args.name} already at revision {number} ({wanted})")
            return 0
        reconciler = _reconciler()
        manifest = {**state.manifest, "spec": apply_merge_patch(state.manifest.get("spec"), patch["spec"])}
        reconciler.apply(manifest, http_port=state.http_port, host=state.host)
        print(f"{args.name}: rolling back to revision {number} ({wanted})", flush=True)
        return _follow(args.name, None, reconciler)
