"""``lmops rollout status|promote|abort|restart|undo|history NAME``: kubectl-style rollout controls.

On a cluster everything goes through the API server with the current kubeconfig, and only through what
``kubectl`` can do as well: promote/abort/restart set a control annotation (``lmops.io/promote`` ...) that
the operator acts on once and removes; ``undo`` writes an earlier revision's fields (those whose change cost
is a new revision) back into the spec from its ControllerRevision, which the operator then rolls out like any
other change. The model ``lmops up`` serves gets the same commands from ``rollout_local``; ``_either`` picks.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lmops_operator.api.annotations import ABORT, PROMOTE, RESTART, read_controls, request_patch
from lmops_operator.commands import rollout_local
from lmops_operator.commands.rollout_view import (
    EXIT_FAILED,
    WATCH_PERIOD_S,
    RolloutError,
    history_lines,
    parse_object,
    revision_label,
    undo_patch,
    watch_status,
)
from lmops_operator.names import MODEL_LABEL

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


def _controller_revisions(kube: Any, namespace: str, name: str) -> list[dict[str, Any]]:
    from lmops_operator.k8s.resources import CONTROLLER_REVISION

    items: list[dict[str, Any]] = kube.list(
        CONTROLLER_REVISION.collection(namespace), label_selector=f"{MODEL_LABEL}={name}"
    )
    return sorted(items, key=lambda r: int(r.get("revision") or 0))


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
            revision_label(obj),
            str((obj.get("metadata") or {}).get("creationTimestamp", "")),
            str(((obj.get("data") or {}).get("model") or {}).get("source", "")),
        )
        for obj in revisions
    ]
    print("\n".join(history_lines(rows, status)))
    return 0


def cmd_undo(args: argparse.Namespace) -> int:
    from lmops_operator.k8s.resources import LANGUAGE_MODEL

    kube, namespace = _connect(args)
    obj = _get(kube, namespace, args.name)
    revisions = _controller_revisions(kube, namespace, args.name)
    chosen, patch = undo_patch(obj.get("spec") or {}, revisions, args.to_revision)
    wanted = revision_label(chosen)
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
        return rollout_local.control(args, read_controls({key: verb}), verb)

    return run


def _local(name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
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
