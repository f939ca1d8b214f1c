"""The cluster tier: a real single-node Kubernetes on this machine (hack/node/), KubeRay's operator and lmops'
chart as pods, images built by the project. Started once per session and stopped at its end; the stop must
leave no process, mount, bridge or iptables chain behind. Skipped, with the reason, where the machine cannot
run it (not root, not Linux, the Debian packages missing).

Each test allows an hour (pytest.mark.timeout): whichever runs first also pays for starting the node, which
includes importing a changed runtime image into containerd (minutes the first time on a machine)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

import pytest

from testkit.controlplane import REPO_ROOT
from tests.support.node import Node, apply_and_wait_ready, leftovers, why_not

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture(scope="session")
def node() -> Iterator[Node]:
    reason = why_not()
    if reason:
        pytest.skip(f"cluster tier skipped: {reason}")
    started = time.monotonic()
    try:
        up = Node.up()
    except Exception:
        Node.down()
        raise
    sys.stderr.write(f"\nsingle-node cluster up in {time.monotonic() - started:.0f}s\n")
    try:
        yield up
    finally:
        Node.down()
        left = leftovers()
        assert not left, f"the stopped node left behind: {left}"


@pytest.fixture(scope="session")
def lmops(node: Node) -> Node:
    """lmops installed the way a user installs it: `helm install` of charts/lmops, the operator as a Pod."""
    node.helm(
        "install", "lmops", str(REPO_ROOT / "charts" / "lmops"), "--namespace", "lmops-system",
        "--create-namespace", "--values", str(REPO_ROOT / "hack" / "node" / "values.yaml"),
        "--wait", "--timeout", "5m",
    )  # fmt: skip
    return node


@pytest.fixture(scope="session")
def tiny(lmops: Node) -> dict[str, float]:
    """examples/tiny.yaml applied with kubectl and Ready; returns seconds from `kubectl apply` to the first
    answered completion (through the Service, from the host) and to the Ready condition."""
    return apply_and_wait_ready(lmops, REPO_ROOT / "examples" / "tiny.yaml")
