"""``lmops up FILE`` / ``lmops down``: serve a LanguageModel on a local Ray, no Kubernetes needed.

``up`` starts (or reuses) a local Ray head, deploys the model with the operator's own planner, waits until it
serves, and prints the endpoint. Run it again on a changed FILE and it rolls the new revision out per the
file's rollout spec, printing every step until the rollout is promoted, rolled back or paused. ``down``
stops the local Ray that ``up`` started and forgets the model. Ray, torch and the runtime are imported only
when these commands run, so the rest of the CLI stays fast.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from lmops_operator.api import KIND, InvalidLanguageModel, LanguageModelStatus

DEFAULT_PORT = 8000
EXIT_USAGE = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A problem with the command line or the file; printed without a traceback."""


def read_manifests(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    """The one LanguageModel in FILE, plus its ConfigMaps' data by name (for a quality gate's eval set)."""
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"{path}: cannot read YAML: {exc}") from None
    models = [d for d in documents if isinstance(d, dict) and d.get("kind", KIND) == KIND and "spec" in d]
    config_maps = {
        str(d.get("metadata", {}).get("name")): {str(k): str(v) for k, v in (d.get("data") or {}).items()}
        for d in documents
        if isinstance(d, dict) and d.get("kind") == "ConfigMap"
    }
    if len(models) != 1:
        raise UsageError(f"{path}: expected exactly one LanguageModel document, found {len(models)}")
    return models[0], config_maps


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _clock(at: datetime) -> str:
    return at.astimezone().strftime("%H:%M:%S")


class StepPrinter:
    """Prints events, weight changes and new analyses once each, as the reconcile loop goes."""

    def __init__(self) -> None:
        self.weights: dict[str, int] | None = None
        # Analyses from before this command started were printed by an earlier one.
        self.analysis_time: datetime | None = None
        self.started = datetime.now(UTC)
        self.phase: str | None = None

    def __call__(self, step: Any) -> None:
        status: LanguageModelStatus = step.status
        now = datetime.now().astimezone()
        analysis = status.last_analysis
        if analysis is not None and analysis.time != self.analysis_time and analysis.time >= self.started:
            self.analysis_time = analysis.time
            p95 = (
                f", p95 {analysis.p95_latency_milliseconds:.0f} ms"
                if analysis.p95_latency_milliseconds
                else ""
            )
            print(
                f"[{_clock(now)}]   analysis {analysis.verdict}: {analysis.requests} requests, "
                f"{analysis.error_rate:.1%} errors{p95} ({analysis.message})",
                flush=True,
            )
        for kind, reason, message in step.events:
            mark = "!" if kind == "Warning" else "-"
            print(f"[{_clock(now)}] {mark} {reason}: {message}", flush=True)
        weights = dict(step.decision.weights)
        if weights != self.weights:
            split = ", ".join(f"{rev} {weight}%" for rev, weight in sorted(weights.items()))
            print(f"[{_clock(now)}]   traffic: {split}", flush=True)
            self.weights = weights
        if status.phase != self.phase:
            self.phase = status.phase
            print(f"[{_clock(now)}]   phase: {status.phase}", flush=True)


def smoke_request(base: str, name: str, task: str) -> tuple[str, Any]:
    """Send one request fitting the task; returns (what was called, the JSON answer)."""
    import httpx

    if task == "generate":
        path, body = "/v1/completions", {"model": name, "prompt": "Hello, my name is", "max_tokens": 16}
    elif task == "classify":
        path, body = "/predict", {"text": "what a lovely day"}
    else:
        path, body = "/v1/embeddings", {"model": name, "input": "what a lovely day"}
    response = httpx.post(base + path, json=body, timeout=120)
    if response.status_code != 200:
        raise RuntimeError(f"POST {path} answered {response.status_code}: {response.text[:500]}")
    return f"POST {path} {body}", response.json()


def curl_example(base: str, name: str, task: str) -> str:
    if task == "generate":
        return (
            f"curl -s {base}/v1/completions -H 'Content-Type: application/json' "
            f'-d \'{{"model": "{name}", "prompt": "Hello", "max_tokens": 16}}\''
        )
    if task == "classify":
        return f"curl -s {base}/predict -H 'Content-Type: application/json' -d '{{\"text\": \"hello\"}}'"
    return (
        f"curl -s {base}/v1/embeddings -H 'Content-Type: application/json' "
        f'-d \'{{"model": "{name}", "input": "hello"}}\''
    )


def up(args: argparse.Namespace) -> int:
    from lmops_operator.local import controls
    from lmops_operator.local import state as store

    # One process drives the local model's rollout at a time (``local.controls``).
    with controls.driving(store.state_path()) as mine:
        try:
            if not mine:
                raise UsageError(
                    "another lmops command is rolling the local model out right now: wait until it ends "
                    "(or stop it with Ctrl-C), then run this again"
                )
            return _up(args)
        except UsageError as exc:
            print(f"lmops up: {exc}", file=sys.stderr)
            return EXIT_USAGE


def _up(args: argparse.Namespace) -> int:
    manifest, config_maps = read_manifests(Path(args.file))
    from lmops_operator.api import load_language_model

    try:
        lm = load_language_model(manifest)
    except InvalidLanguageModel as exc:
        lines = "\n".join(f"  {path or '(object)'}: {message}" for path, message in exc.errors)
        raise UsageError(f"{args.file}: invalid LanguageModel {exc.name}:\n{lines}") from None

    _ray_env()
    from lmops_operator.local import state as store
    from lmops_runtime import local as runtime_local

    existing = store.load()
    if existing is not None and runtime_local.connect_existing() is None:
        print(f"note: the local Ray of {existing.name} is gone (reboot?); starting over")
        store.remove()
        existing = None
    if existing is not None and existing.name != lm.metadata.name:
        raise UsageError(
            f"model {existing.name!r} is already running locally; run `lmops down` first "
            "(one model per local Ray)"
        )
    host = args.host
    if existing is not None:
        port = existing.http_port
        if args.port not in (None, port):
            print(f"note: {existing.name} already serves on port {port}; --port is ignored")
    else:
        port = args.port if args.port is not None else DEFAULT_PORT
        if port_in_use(host, port):
            raise UsageError(f"port {port} on {host} is in use; pick another with --port")

    fresh = existing is None
    ray_handle: Any = None
    try:
        if fresh:
            print(f"Starting a local Ray (state in {store.state_path().parent}) ...", flush=True)
        ray_handle = runtime_local.start_local_ray(num_cpus=args.num_cpus, persistent=True)
        step, reconciler = _reconcile(args, lm, manifest, config_maps, port, host, fresh)
    except KeyboardInterrupt:
        return _interrupted(fresh, ray_handle)
    except Exception as exc:  # any failure to start or deploy: say why, leave nothing half-started
        print(f"lmops up: {type(exc).__name__}: {exc}", file=sys.stderr)
        if fresh:
            print("Nothing serves: stopping the local Ray again.", file=sys.stderr)
            _stop(ray_handle)
        return EXIT_FAILED

    status = step.status
    state = reconciler.state()
    base = f"http://{state.host}:{state.http_port}"
    rollout = status.rollout
    if rollout is not None and rollout.state in ("Aborted", "Paused"):
        print(f"Rollout of {rollout.revision} {rollout.state.lower()}: {rollout.abort_reason}")
    print(f"\n{lm.metadata.name} is {status.phase}: revision {status.stable_revision} serves at {base}/v1")
    print(f"Try it:\n  {curl_example(base, lm.metadata.name, lm.spec.model.task)}")
    print("Stop it with `lmops down`.")
    if args.smoke:
        try:
            called, answer = smoke_request(base, lm.metadata.name, lm.spec.model.task)
        except Exception as exc:
            print(f"smoke request failed: {exc}", file=sys.stderr)
            return EXIT_FAILED
        print(f"\nSmoke test: {called}\n{json.dumps(answer, indent=2)}")
    return 0 if status.phase in ("Ready", "ScaledToZero", "Progressing") else EXIT_FAILED


def _ray_env() -> None:
    """Ray reads its auth settings when it is imported: point them at lmops' token (``local_env``) first."""
    from lmops_runtime.local_env import use_local_token

    use_local_token()


class LocalUpError(Exception):
    """The reconcile loop failed (the message says why)."""


def _reconcile(
    args: argparse.Namespace,
    lm: Any,
    manifest: dict[str, Any],
    config_maps: dict[str, dict[str, str]],
    port: int,
    host: str,
    fresh: bool,
) -> tuple[Any, Any]:
    import ray

    from lmops_operator.local.reconciler import LocalReconciler, LocalRolloutError

    gpus = int(ray.cluster_resources().get("GPU", 0))  # type: ignore[no-untyped-call]
    reconciler = LocalReconciler(local_gpus=gpus)
    try:
        reconciler.apply(manifest, http_port=port, host=host, config_maps=config_maps)
        verb = "Deploying" if fresh else "Reconciling"
        print(
            f"{verb} {lm.metadata.name} ({lm.spec.model.source}): Serve starts a replica per revision, "
            "which loads the model (a minute or so the first time) ...",
            flush=True,
        )
        with _InterruptLatch() as latch:
            step = reconciler.run(timeout_s=args.timeout, on_step=StepPrinter(), sleep=latch.sleep)
    except LocalRolloutError as exc:
        raise LocalUpError(str(exc)) from None
    return step, reconciler


class _InterruptLatch:
    """Ctrl-C that cannot be lost. Python drops a KeyboardInterrupt that lands while the main thread runs a
    finalizer (Ray's object refs and HTTP clients have them; it prints "Exception ignored"), and ``lmops up``
    then walked on with its rollout. The latch remembers the signal; the reconcile loop's sleep raises it."""

    def __init__(self) -> None:
        self.pressed = False
        self._previous: Any = None

    def __enter__(self) -> _InterruptLatch:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: Any) -> None:
        self.pressed = True
        raise KeyboardInterrupt

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)
        if self.pressed:
            raise KeyboardInterrupt


def _stop(ray_handle: Any) -> None:
    from lmops_operator.local import state as store
    from lmops_runtime import local as runtime_local

    handle = ray_handle or runtime_local.connect_existing()
    runtime_local.shutdown(handle)
    store.remove()


def _interrupted(fresh: bool, ray_handle: Any) -> int:
    from lmops_operator.local import state as store

    state = store.load()
    serving = state is not None and bool(state.status.get("stableRevision"))
    if fresh and not serving:
        print("\nInterrupted before the model served: stopping the local Ray.", file=sys.stderr)
        _stop(ray_handle)
    else:
        print(
            "\nInterrupted. The stable revision keeps serving and the rollout state is saved: "
            "`lmops up FILE` continues it, `lmops down` stops everything.",
            file=sys.stderr,
        )
    return EXIT_INTERRUPTED


def down(args: argparse.Namespace) -> int:
    """Stop what ``lmops up`` started; safe to run any number of times."""
    _ray_env()
    from lmops_operator.local import state as store
    from lmops_runtime import local as runtime_local

    try:
        state = store.load()
    except ValueError as exc:  # a damaged state file: say so, and remove it
        print(f"note: {exc}", file=sys.stderr)
        store.remove()
        state = None
    try:
        local = runtime_local.connect_existing()
    except Exception as exc:  # e.g. a head that no longer admits this driver: stop its processes anyway
        print(f"note: cannot attach to the local Ray ({type(exc).__name__}); stopping its processes")
        local = runtime_local.recorded()
    if local is None and state is None:
        print("Nothing is running locally.")
        return 0
    if local is not None:
        runtime_local.shutdown(local)
        print("Stopped the local Ray.")
    store.remove()
    runtime_state = store.state_path().with_name(runtime_local.STATE_FILE)
    runtime_state.unlink(missing_ok=True)
    if state is not None:
        print(f"Forgot local model {state.name}.")
    return 0


def _positive_float(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return number


def _port(value: str) -> int:
    number = int(value)
    if not 1 <= number <= 65535:
        raise argparse.ArgumentTypeError("must be 1-65535")
    return number


UP_DESCRIPTION = (
    "Serve the LanguageModel in FILE on a Ray on this machine, no Kubernetes needed: start Ray (or reuse the "
    "one a previous `lmops up` started), deploy the model as the operator would on a cluster, wait until it "
    "serves and print its endpoint. Run it again on a changed FILE and the new revision rolls out per the "
    "file's spec.rollout, each step printed. `lmops rollout ... NAME` follows and steers it; `lmops down` "
    "stops everything."
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "up",
        help="serve a LanguageModel file on a local Ray (and roll out changes to it)",
        description=UP_DESCRIPTION,
    )
    parser.add_argument("file", help="YAML with one LanguageModel (and optionally ConfigMaps it refers to)")
    parser.add_argument("--port", type=_port, default=None, help=f"HTTP port (default {DEFAULT_PORT})")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP host to bind (default 127.0.0.1)")
    parser.add_argument("--smoke", action="store_true", help="send one request once it serves and print it")
    parser.add_argument(
        "--timeout", type=_positive_float, default=900.0, help="seconds to wait for the rollout (default 900)"
    )
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs for the local Ray (default: all)")
    parser.set_defaults(handler=up)
    stop = subparsers.add_parser(
        "down", help="stop the local Ray started by `lmops up`", description=down.__doc__
    )
    stop.set_defaults(handler=down)
