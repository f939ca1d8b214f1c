"""The operator's caches and queue without an API server: versions, echoes, relists, peering, coalescing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from lmops_operator.k8s.cache import Caches, stub_foreign
from lmops_operator.k8s.informer import Cached, Informer
from lmops_operator.k8s.peering import peering_allows
from lmops_operator.k8s.reconcile import child_event_reason
from lmops_operator.k8s.resources import SERVICE
from lmops_operator.k8s.workqueue import WorkQueue
from lmops_operator.planning.children import ObservedChildren


def _obj(name: str, version: int, model: str | None = "m", **extra: Any) -> dict[str, Any]:
    labels = {"lmops.io/model": model} if model else {}
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "resourceVersion": str(version),
            "labels": labels,
            "managedFields": [{"manager": "x"}],
        },
        **extra,
    }


class FakeKube:
    def __init__(self, items: list[dict[str, Any]], version: str) -> None:
        self.items, self.version = items, version

    def list_with_version(self, path: str, query: Any = ()) -> tuple[list[Any], str]:
        return self.items, self.version


def _informer(kube: Any = None) -> tuple[Informer, list[tuple[Cached | None, Cached | None]]]:
    changes: list[tuple[Cached | None, Cached | None]] = []
    informer = Informer(
        kube, SERVICE, "ns", lambda old, new: changes.append((old, new)), model_label="lmops.io/model"
    )
    return informer, changes


def test_events_move_forward_only_and_the_operators_own_writes_are_not_news() -> None:
    informer, changes = _informer()
    informer._apply_event("ADDED", _obj("a", 5))
    assert len(changes) == 1 and changes[0][0] is None
    entry = informer.get("ns", "a")
    assert entry is not None and entry.version == 5 and entry.model == "m"
    assert "managedFields" not in entry.body()["metadata"] and entry.body()["kind"] == "Service"

    informer.remember(_obj("a", 7, spec={"x": 1}))  # our apply's response
    assert len(changes) == 1
    informer._apply_event("MODIFIED", _obj("a", 6))  # older than what we wrote: dropped
    informer._apply_event("MODIFIED", _obj("a", 7, spec={"x": 1}))  # the echo of our write
    assert len(changes) == 1
    informer._apply_event("MODIFIED", _obj("a", 8, spec={"x": 2}))  # someone else's edit: news
    assert len(changes) == 2
    assert [e.name for e in informer.of_model("ns", "m")] == ["a"]

    informer._apply_event("DELETED", _obj("a", 9))
    assert changes[-1][1] is None and informer.get("ns", "a") is None
    assert informer.of_model("ns", "m") == []


def test_a_label_change_moves_the_object_between_models() -> None:
    informer, _ = _informer()
    informer._apply_event("ADDED", _obj("a", 1, model="m"))
    informer._apply_event("MODIFIED", _obj("a", 2, model="n"))
    assert informer.of_model("ns", "m") == [] and [e.name for e in informer.of_model("ns", "n")] == ["a"]


def test_relist_reports_what_vanished_but_keeps_what_we_wrote_since() -> None:
    informer, changes = _informer(FakeKube([_obj("kept", 3)], "10"))
    informer._apply_event("ADDED", _obj("kept", 3))
    informer._apply_event("ADDED", _obj("gone", 4))
    informer.remember(_obj("ours", 11))  # written after the list's version 10
    changes.clear()
    assert informer._relist() == "10"
    assert informer.synced.is_set()
    assert [(old.name if old else None, new) for old, new in changes] == [("gone", None)]
    assert {e.name for e in informer.entries()} == {"kept", "ours"}


def test_foreign_rayservices_are_kept_as_name_and_owners_only() -> None:
    foreign = {
        "kind": "RayService",
        "metadata": {"name": "tiny", "labels": {"team": "x"}, "ownerReferences": [{"uid": "u"}]},
        "spec": {"big": "x" * 1000},
    }
    assert stub_foreign(foreign) == {
        "apiVersion": None,
        "kind": "RayService",
        "metadata": {"name": "tiny", "labels": {"team": "x"}, "ownerReferences": [{"uid": "u"}]},
    }
    ours = _obj("tiny", 1, spec={"big": "y"})
    assert stub_foreign(ours)["spec"] == {"big": "y"}


def test_every_change_enqueues_the_owning_model() -> None:
    queued: list[tuple[str, str]] = []
    caches = Caches(None, ("ns",), lambda ns, name: queued.append((ns, name)))  # type: ignore[arg-type]
    children = caches._informers
    children["Service"]["ns"]._apply_event("ADDED", _obj("svc", 1, model="m1"))
    children["RayService"]["ns"]._apply_event("ADDED", _obj("other", 1, model=None))
    children["LanguageModel"]["ns"]._apply_event("ADDED", _obj("m2", 1, model=None))
    assert queued == [("ns", "m1"), ("ns", "other"), ("ns", "m2")]
    view = caches.children("ns", "m1")
    assert view.get("Service", "svc") is not None and caches.model("ns", "m2") is not None


def test_observed_children_filter_by_controller() -> None:
    mine = {"metadata": {"name": "a", "ownerReferences": [{"uid": "u1", "controller": True}]}}
    theirs = {"metadata": {"name": "b", "ownerReferences": [{"uid": "u2", "controller": True}]}}
    view = ObservedChildren({("ControllerRevision", "a"): mine, ("ControllerRevision", "b"): theirs})
    assert view.of_kind("ControllerRevision", "u1") == [mine]
    assert view.of_kind("ControllerRevision") == [mine, theirs]
    assert view.get("Service", "a") is None


def test_peering_allows_only_the_top_live_peer_once_its_heartbeat_is_published() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)

    def peer(priority: int, age_s: float = 0) -> dict[str, Any]:
        return {
            "priority": priority,
            "lifetime": 60,
            "lastseen": (now - timedelta(seconds=age_s)).isoformat(),
        }

    assert not peering_allows([], "me", 10, now)
    assert not peering_allows([{"status": {"other": peer(5)}}], "me", 10, now)  # ours not published yet
    assert peering_allows([{"status": {"me": peer(10), "other": peer(5)}}], "me", 10, now)
    assert not peering_allows([{"status": {"me": peer(10), "other": peer(20)}}], "me", 10, now)
    assert not peering_allows([{"status": {"me": peer(10), "other": peer(10)}}], "me", 10, now)  # a tie
    assert peering_allows([{"status": {"me": peer(10), "dead": peer(20, age_s=61)}}], "me", 10, now)
    two = [{"status": {"me": peer(10)}}, {"status": {"me": peer(10), "other": peer(11)}}]
    assert not peering_allows(two, "me", 10, now)  # any namespace's peering pauses


def test_child_events_name_one_kind_or_say_children() -> None:
    assert child_event_reason("Updated", ["RayService tiny"]) == "RayServiceUpdated"
    assert child_event_reason("Created", ["RayService tiny", "Service tiny"]) == "ChildrenCreated"


def test_work_queue_folds_events_and_runs_one_more_after_a_change_during_a_reconcile() -> None:
    async def scenario() -> list[tuple[str, str]]:
        runs: list[tuple[str, str]] = []
        release = asyncio.Event()
        queue = WorkQueue(workers=2)

        async def work(namespace: str, name: str, timed: bool) -> None:
            runs.append((namespace, name))
            if len(runs) == 1:
                await release.wait()

        queue.work = work
        queue.start()
        queue.add("ns", "a")
        queue.add("ns", "a")
        await asyncio.sleep(0.05)
        assert runs == []  # closed: caches not synced yet
        queue.set_open(True)
        await asyncio.sleep(0.05)
        queue.add("ns", "a")  # during the reconcile: exactly one more
        queue.add("ns", "a")
        release.set()
        await asyncio.sleep(0.05)
        await queue.stop()
        return runs

    assert asyncio.run(scenario()) == [("ns", "a"), ("ns", "a")]


def test_a_status_only_change_is_no_news_for_kinds_whose_status_no_decision_reads() -> None:
    changes: list[Any] = []
    informer = Informer(
        None,  # type: ignore[arg-type]
        SERVICE,
        "ns",
        lambda old, new: changes.append(new),
        model_label="lmops.io/model",
        status_matters=False,
    )
    informer._apply_event("ADDED", _obj("pdb", 1, spec={"x": 1}))
    informer._apply_event("MODIFIED", _obj("pdb", 2, spec={"x": 1}, status={"expectedPods": 3}))
    assert len(changes) == 1
    entry = informer.get("ns", "pdb")
    assert entry is not None and entry.version == 2  # cached all the same
    informer._apply_event("MODIFIED", _obj("pdb", 3, spec={"x": 2}, status={"expectedPods": 3}))
    assert len(changes) == 2


def test_fingerprint_moves_with_any_version_of_the_model_or_its_children() -> None:
    caches = Caches(None, ("ns",), lambda ns, name: None)  # type: ignore[arg-type]
    informers = caches._informers
    informers["LanguageModel"]["ns"]._apply_event("ADDED", _obj("m", 1, model=None))
    first = caches.fingerprint("ns", "m")
    assert caches.fingerprint("ns", "m") == first
    informers["Service"]["ns"]._apply_event("ADDED", _obj("m", 2))
    second = caches.fingerprint("ns", "m")
    assert second != first
    informers["RayService"]["ns"]._apply_event("ADDED", _obj("m", 3, model=None))  # foreign, at its name
    assert caches.fingerprint("ns", "m") != second


def test_a_later_request_replaces_the_pending_timer() -> None:
    async def scenario() -> list[tuple[str, str, bool]]:
        runs: list[tuple[str, str, bool]] = []

        async def work(namespace: str, name: str, timed: bool) -> None:
            runs.append((namespace, name, timed))

        queue = WorkQueue(workers=1)
        queue.work = work
        queue.start()
        queue.set_open(True)
        queue.add_later(0.05, "ns", "a")
        queue.add_later(0.1, "ns", "a")  # replaces the first: one run, not two
        queue.add("ns", "b")
        await asyncio.sleep(0.3)
        await queue.stop()
        return runs

    assert asyncio.run(scenario()) == [("ns", "b", False), ("ns", "a", True)]


def test_a_status_only_change_of_a_pdb_leaves_the_fingerprint_alone() -> None:
    caches = Caches(None, ("ns",), lambda ns, name: None)  # type: ignore[arg-type]
    pdbs = caches._informers["PodDisruptionBudget"]["ns"]
    pdbs._apply_event("ADDED", _obj("m-workers", 1, spec={"x": 1}))
    before = caches.fingerprint("ns", "m")
    pdbs._apply_event("MODIFIED", _obj("m-workers", 2, spec={"x": 1}, status={"expectedPods": 0}))
    assert caches.fingerprint("ns", "m") == before
    pdbs._apply_event("MODIFIED", _obj("m-workers", 3, spec={"x": 2}, status={"expectedPods": 0}))
    assert caches.fingerprint("ns", "m") != before


def test_events_go_before_timer_polls() -> None:
    async def scenario() -> list[str]:
        runs: list[str] = []

        async def work(namespace: str, name: str, timed: bool) -> None:
            runs.append(name)

        queue = WorkQueue(workers=1)
        queue.work = work
        queue.start()
        for name in ("poll-1", "poll-2"):
            queue.add_later(0.0, "ns", name)
        await asyncio.sleep(0.01)  # both timers fired; the queue is still closed
        queue.add("ns", "event")
        queue.set_open(True)
        await asyncio.sleep(0.05)
        await queue.stop()
        return runs

    assert asyncio.run(scenario()) == ["event", "poll-1", "poll-2"]


def test_a_change_by_another_hand_during_a_reconcile_is_planned_again() -> None:
    caches = Caches(None, ("ns",), lambda ns, name: None)  # type: ignore[arg-type]
    informers = caches._informers
    informers["LanguageModel"]["ns"]._apply_event("ADDED", _obj("m", 1, model=None))
    start = caches.fingerprint("ns", "m")
    caches.remember({**_obj("m", 5), "kind": "Service"})  # the reconcile's own write
    assert caches.settled("ns", "m", start) == caches.fingerprint("ns", "m")  # nothing else: settled
    informers["RayCluster"]["ns"]._apply_event("ADDED", _obj("m-x7k2p", 6))  # KubeRay, meanwhile
    assert caches.settled("ns", "m", start) != caches.fingerprint("ns", "m")


def test_the_first_write_into_an_empty_namespace_is_remembered() -> None:
    """An informer holding nothing is falsy (it has a length); the write's response must still be cached,
    or the next reconcile would not see the child it just created and apply it again."""
    caches = Caches(None, ("ns",), lambda ns, name: None)  # type: ignore[arg-type]
    caches.remember({"kind": "Service", **_obj("svc", 3, model="m1")})
    assert caches.children("ns", "m1").get("Service", "svc") is not None
    assert caches.written[("Service", "ns", "svc")] == 3
