"""The cluster tier: a real single-node Kubernetes on this machine (hack/node/), KubeRay's operator and lmops'
chart as pods, images built by the project. Started once per session and stopped at its end; the stop must
leave no process, mount, bridge or iptables chain behind. Skipped, with the reason, where the machine cannot
run it (not root, not Linux, the Debian packages missing).

Each test allows an hour (pytest.mark.timeout): whichever runs first also pays for starting the node, which
includes importing a changed runtime image into containerd (minutes the first time on a machine)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from testkit.controlplane import REPO_ROOT
from tests.support.node import Node, Report, apply_and_wait_ready, leftovers, why_not

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

REPORT = pytest.StashKey[Report]()
CACHE_KEY = "lmops/cluster-figures"


@pytest.fixture(scope="session")
def report(request: pytest.FixtureRequest) -> Report:
    """Where the tests put what they measured; printed at the end of the run (pytest_terminal_summary)."""
    return request.config.stash.setdefault(REPORT, Report())


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """The figures the cluster tier measured, in the normal output (CI's log), whatever passed or failed."""
    report = config.stash.get(REPORT, None)
    if report is None or not report.lines:
        return
    terminalreporter.section("cluster tier: measured on the node")
    for line in report.lines:
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"figures {json.dumps(report.figures, sort_keys=True)}")
    if config.cache is not None:
        config.cache.set(CACHE_KEY, report.figures)
        terminalreporter.write_line(f"(also in pytest's cache: {CACHE_KEY})")


@pytest.fixture(scope="session")
def node(report: Report) -> Iterator[Node]:
    reason = why_not()
    if reason:
        pytest.skip(f"cluster tier skipped: {reason}")
    started = time.monotonic()
    try:
        up = Node.up()
    except Exception:
        Node.down()
        raise
    took = time.monotonic() - started
    report(f"single-node cluster up in {took:.0f}s", node_up_s=took)
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
def tiny(lmops: Node, report: Report) -> dict[str, float]:
    """examples/tiny.yaml applied with kubectl and Ready; returns (and reports) seconds from `kubectl apply`
    to the first answered completion (through the Service, from the host) and to the Ready condition."""
    figures = apply_and_wait_ready(lmops, REPO_ROOT / "examples" / "tiny.yaml")
    report(
        f"tiny on the node: apply -> first completion {figures['first_completion_s']:.0f}s, "
        f"apply -> Ready {figures['ready_s']:.0f}s",
        tiny_apply_to_first_completion_s=figures["first_completion_s"],
        tiny_apply_to_ready_s=figures["ready_s"],
    )
    return figures
