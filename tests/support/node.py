"""The single-node cluster (hack/node/) as the cluster tier drives it: started and stopped by the scripts a
user runs (`make cluster-up` / `make cluster-down`), then used only through kubectl, helm and the Services.

The node runs as root on this machine; nothing here talks to anything but its API server and its pods.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from openai import OpenAI

from testkit.controlplane import DEFAULT_BIN_DIR, REPO_ROOT

NODE_DIR = Path(os.environ.get("LMOPS_NODE_DIR", "/var/lib/lmops-node"))
HACK = REPO_ROOT / "hack"


def why_not() -> str | None:
    """What this machine lacks to run the node (root, Linux, containerd, buildah, ...), or None."""
    result = subprocess.run(
        ["bash", str(HACK / "images" / "prerequisites.sh")], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() or None if result.returncode else None


def leftovers() -> list[str]:
    """What a stopped node must not leave: live recorded processes, mounts, the bridge, KUBE- chains."""
    found = []
    for pidfile in (NODE_DIR / "pids").glob("*.pid"):
        pid = pidfile.read_text().strip()
        if pid and Path(f"/proc/{pid}").exists():
            found.append(f"process {pidfile.stem} ({pid})")
    mounts = Path("/proc/self/mounts").read_text().split("\n")
    prefixes = ("/var/lib/kubelet", "/run/netns/cni-", "/run/containerd/io.containerd")
    found += [f"mount {m.split()[1]}" for m in mounts if m and m.split()[1].startswith(prefixes)]
    if Path("/sys/class/net/lmops0").exists():
        found.append("bridge lmops0")
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True, check=False).stdout
    found += [f"iptables {line}" for line in rules.splitlines() if line.startswith((":KUBE-", ":CNI-"))]
    found += [f"containerd shim {pid}" for pid in node_shims()]
    return found


#: The command line of a container shim of the node's containerd (hack/node/containerd.toml's address); the
#: same pattern ``hack/node/down.sh`` kills by.
SHIM_PATTERN = re.compile(
    r"containerd-shim-runc-v2 -namespace k8s\.io .*-address /run/containerd/containerd\.sock"
)


def node_shims() -> list[int]:
    """Live shims of the node's containerd, found by command line: a shim whose task directory was already
    deleted has no shim.pid left to find it by, yet runs on."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            command = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # the process ended meanwhile
            continue
        if SHIM_PATTERN.search(command):
            pids.append(int(cmdline.parent.name))
    return pids


@dataclass
class Report:
    """What the cluster tier measured on the node. tests/cluster/conftest.py prints it in pytest's terminal
    summary (so CI's normal output carries it) and stores the figures in pytest's cache under
    ``lmops/cluster-figures``; each line also goes to stderr when it is measured (seen with ``-s``)."""

    lines: list[str] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)

    def __call__(self, line: str, **figures: float) -> None:
        self.lines.append(line)
        self.figures.update({name: round(value, 1) for name, value in figures.items()})
        sys.stderr.write(f"\n{line}\n")


@dataclass
class Node:
    """A started node: its kubeconfig, the image references it holds, and kubectl/helm bound to it."""

    kubeconfig: Path
    images: dict[str, str]
    bin_dir: Path = DEFAULT_BIN_DIR

    @classmethod
    def up(cls) -> Node:
        _script("up.sh", timeout=3600)
        images = dict(
            line.split("=", 1) for line in (NODE_DIR / "images.env").read_text().splitlines() if "=" in line
        )
        return cls(kubeconfig=NODE_DIR / "pki" / "admin.kubeconfig", images=images)

    @staticmethod
    def down() -> None:
        _script("down.sh", timeout=600)

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 300) -> str:
        argv = [str(self.bin_dir / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args]
        return _run(argv, input, timeout)

    def helm(self, *args: str, timeout: float = 600) -> str:
        return _run([str(self.bin_dir / "helm"), "--kubeconfig", str(self.kubeconfig), *args], None, timeout)

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def wait_for(
        self,
        what: str,
        check: Callable[[], Any],
        timeout: float,
        interval: float = 2.0,
        detail: Callable[[], str] | None = None,
    ) -> Any:
        """Poll ``check()`` until it returns something truthy; after ``timeout`` s fail naming ``what``,
        with ``detail()`` appended: the state worth reading then (pods, events, logs), only on failure."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                message = f"timed out after {timeout:.0f}s waiting for {what}"
                raise TimeoutError(f"{message}:\n{detail()}" if detail else message)
            time.sleep(interval)

    def wait_pods_ready(self, model: str, timeout: float) -> None:
        """Every pod of ``model`` passes the readiness probe KubeRay gives it (head and workers)."""
        self.wait_for(
            f"every pod of {model} to be Ready",
            lambda: not self.unready_pods(model),
            timeout=timeout,
            detail=lambda: f"unready {self.unready_pods(model)}:\n{self.diagnostics()}",
        )

    def service_url(self, name: str, namespace: str = "default", port: int = 8000) -> str:
        ip = self.get("service", name, "-n", namespace)["spec"]["clusterIP"]
        return f"http://{ip}:{port}"

    def diagnostics(self) -> str:
        """State worth reading when a test fails: objects, pods, events and the operators' logs."""
        parts = []
        for args in (
            ("get", "languagemodels,rayservices,rayclusters,pods,svc", "-A", "-o", "wide"),
            ("get", "events", "-A", "--sort-by=.lastTimestamp"),
            ("logs", "-n", "lmops-system", "deployment/lmops", "--tail=80"),
            ("logs", "-n", "kuberay-system", "deployment/kuberay-operator", "--tail=40"),
        ):
            try:
                parts.append(self.kubectl(*args, timeout=60)[-6000:])
            except subprocess.CalledProcessError as exc:
                parts.append(f"kubectl {' '.join(args)}: {exc.stderr}")
        return "\n".join(parts)

    def serve_log_lines(self, model: str, pattern: str) -> str:
        """Lines matching ``pattern`` (grep -E) in the Serve logs (Router, proxy, controller, replicas) of
        every Ray pod of ``model``: what a failed request looked like from inside the cluster."""
        found = []
        for pod in self.get("pods", "-l", f"lmops.io/model={model}")["items"]:
            name = pod["metadata"]["name"]
            script = f"grep -hE {shlex.quote(pattern)} /tmp/ray/session_latest/logs/serve/*.log | tail -n 40"
            try:
                lines = self.kubectl("exec", name, "--", "sh", "-c", script, timeout=60)
            except subprocess.CalledProcessError as exc:
                lines = f"(none: {exc.stderr.strip()[-200:]})"
            found.append(f"--- {name}\n{lines}")
        return "\n".join(found)

    def model_pods(self, model: str) -> list[dict[str, Any]]:
        return list(self.get("pods", "-l", f"lmops.io/model={model}")["items"])

    def workers(self, model: str) -> list[str]:
        """Names of the model's Ray worker pods that exist and are not being deleted."""
        return [
            pod["metadata"]["name"]
            for pod in self.model_pods(model)
            if pod["metadata"]["labels"].get("ray.io/node-type") == "worker"
            and not pod["metadata"].get("deletionTimestamp")
        ]

    def replica_calls(self, pod: str, revision: str) -> int:
        """Calls the ModelServer replicas of ``revision`` in ``pod`` answered: Serve's access log lines
        (``CALL <route> OK``, the Router's calls name the route: /v1/completions) in their replica logs,
        which stay in the pod's Ray session."""
        logs = f"/tmp/ray/session_latest/logs/serve/replica_rev-{revision}_ModelServer_*.log"
        script = f"cat {logs} 2>/dev/null | grep -cE ' CALL [^ ]+ OK ' || true"
        return int(self.kubectl("exec", pod, "--", "sh", "-c", script, timeout=60).strip() or 0)

    def unready_pods(self, model: str) -> list[str]:
        """The model's pods that are not Ready, each with its phase and its containers' readiness."""
        unready = []
        for pod in self.model_pods(model):
            conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
            if conditions.get("Ready") != "True" or pod["metadata"].get("deletionTimestamp"):
                ready = [(c["name"], c["ready"]) for c in pod["status"].get("containerStatuses", [])]
                unready.append(f"{pod['metadata']['name']} {pod['status'].get('phase')} {ready}")
        return unready

    def replica_pods(self, model: str) -> dict[str, list[str]]:
        """Pod name -> the Serve replica actors (``ServeReplica:<app>:<deployment>``) Ray runs in it."""
        pods = self.model_pods(model)
        head = next(p for p in pods if p["metadata"]["labels"].get("ray.io/node-type") == "head")
        by_ip = {p["status"].get("podIP"): p["metadata"]["name"] for p in pods}
        exec_head = ("exec", head["metadata"]["name"], "-c", "ray-head", "--")
        listed = self.kubectl(*exec_head, "python3", "-c", LIST_REPLICAS, timeout=120)
        found: dict[str, list[str]] = {}
        for line in listed.splitlines():
            if line.startswith("ServeReplica:"):
                actor, ip = line.split()
                found.setdefault(by_ip.get(ip, ip), []).append(actor)
        return found


#: Run in the head pod: each live Serve replica actor with the IP of the Ray node (pod) it runs on.
LIST_REPLICAS = """
from ray.util.state import list_actors, list_nodes
ips = {n.node_id: n.node_ip for n in list_nodes()}
for a in list_actors(filters=[("state", "=", "ALIVE")]):
    if a.class_name.startswith("ServeReplica:"):
        print(a.class_name, ips.get(a.node_id))
"""


def apply_and_wait_ready(node: Node, manifest: Path, timeout: float = 1200) -> dict[str, float]:
    """`kubectl apply -f manifest` (a LanguageModel in the default namespace), then wait for its Ready
    condition while calling its Service from the host until one completion is answered.

    Returns seconds from the apply to the first completion and to Ready.
    """
    name = yaml.safe_load(manifest.read_text())["metadata"]["name"]
    applied = time.monotonic()
    node.kubectl("apply", "-f", str(manifest))
    figures: dict[str, float] = {}
    stop = threading.Event()

    def first_completion() -> None:
        while not stop.is_set():
            try:
                client = OpenAI(
                    base_url=node.service_url(name) + "/v1", api_key="-", max_retries=0, timeout=30
                )
                client.completions.create(model=name, prompt="Hello", max_tokens=4)
            except Exception:  # not there yet: no Service, no endpoints, Serve still deploying
                time.sleep(2)
                continue
            figures["first_completion_s"] = time.monotonic() - applied
            return

    poller = threading.Thread(target=first_completion, daemon=True)
    poller.start()
    try:
        node.kubectl("wait", "--for=condition=Ready", f"languagemodel/{name}", f"--timeout={timeout:.0f}s",
                     timeout=timeout + 30)  # fmt: skip
        figures["ready_s"] = time.monotonic() - applied
        poller.join(300)
    except subprocess.SubprocessError as exc:
        raise AssertionError(f"{name} never became Ready:\n{node.diagnostics()}") from exc
    finally:
        stop.set()
    assert "first_completion_s" in figures, f"no completion from {name}:\n{node.diagnostics()}"
    return figures


def _script(name: str, timeout: float) -> None:
    result = subprocess.run(
        ["bash", str(HACK / "node" / name)], capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode:
        raise RuntimeError(f"hack/node/{name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")


def _run(argv: Sequence[str], input: str | None, timeout: float) -> str:
    result = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode:
        raise subprocess.CalledProcessError(result.returncode, argv, result.stdout, result.stderr)
    return result.stdout
