"""An informer: one kind in one scope (a namespace, or the cluster), listed once and then followed by a watch.

The operator reads what exists only from informers, never with a GET per reconcile. Each informer keeps the
objects it was sent, without ``managedFields`` (the bulk of most objects and of no use to the planner), as
compact JSON text: at 1,000 models a parsed dict per child would cost several times the memory, and a
reconcile parses only its own model's few objects.

Staleness rule. An object in the cache is the newest version the API server has sent on the watch, or the
newest one the operator itself wrote (``remember``: a write's response enters the cache at once, so the next
reconcile does not repeat it before the watch catches up). Versions only move forward: an event older than
what is cached is dropped (resourceVersions of one kind are etcd revisions, integers that grow). Every change
the watch delivers, other than the echo of the operator's own write, calls ``on_change``, which enqueues the
owning model: whatever a reconcile decided on a stale view is decided again as soon as the news arrives.
A watch that ends is resumed from the last version seen; one that the server expired (410 Gone) is replaced
by a fresh list, and objects missing from it are reported deleted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from lmops_operator.k8s.client import Kube, KubeError
from lmops_operator.k8s.resources import Resource

log = logging.getLogger(__name__)
WATCH_TIMEOUT_S = 290  # the server ends a watch after this; it is resumed from the last version
READ_TIMEOUT_S = WATCH_TIMEOUT_S + 30.0
RETRY_S = 1.0
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


@dataclass(frozen=True)
class Cached:
    """One object as cached: the keys an index needs, the rest as JSON text."""

    namespace: str
    name: str
    model: str | None  # the lmops.io/model label
    version: int
    raw: str
    # The version of the last change that matters: with ``status_matters`` off, a status-only change keeps it.
    content_version: int = 0

    def body(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.raw)
        return parsed


def _version(meta: Mapping[str, Any]) -> int:
    try:
        return int(meta.get("resourceVersion") or 0)
    except ValueError:  # not an etcd revision: treat every event as news
        return 0


Trim = Callable[[dict[str, Any]], dict[str, Any]]
OnChange = Callable[[Cached | None, Cached | None], None]


def strip_server_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """Drop what no decision reads and would dominate memory: managedFields and kubectl's copy of the spec."""
    meta = dict(obj.get("metadata") or {})
    meta.pop("managedFields", None)
    annotations = meta.get("annotations")
    if isinstance(annotations, dict) and LAST_APPLIED in annotations:
        meta["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
    return {**obj, "metadata": meta}


def _without_status(obj: Mapping[str, Any]) -> dict[str, Any]:
    """``obj`` less what changes with every status write: the status and the resourceVersion."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "resourceVersion"}
    return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": meta}


class Gone(Exception):
    """The watch's resourceVersion is too old (HTTP 410): list again."""


class Informer:
    """Lists and watches ``resource`` in ``namespace`` (None: every namespace) in a thread of its own."""

    def __init__(
        self,
        kube: Kube,
        resource: Resource,
        namespace: str | None,
        on_change: OnChange,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        model_label: str = "",
        trim: Trim = strip_server_fields,
        status_matters: bool = True,
    ) -> None:
        self.kube = kube
        self.resource = resource
        self.namespace = namespace
        self.on_change = on_change
        self.query = [
            (k, v) for k, v in (("labelSelector", label_selector), ("fieldSelector", field_selector)) if v
        ]
        self.model_label = model_label
        self.trim = trim
        # False for kinds whose status no decision reads (a PDB's, written by the disruption controller):
        # a status-only change is cached but is no news.
        self.status_matters = status_matters
        self.synced = threading.Event()
        self._objects: dict[tuple[str, str], Cached] = {}
        self._by_model: dict[tuple[str, str], set[str]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._response: Any = None
        self._thread: threading.Thread | None = None

    # --- reading ---------------------------------------------------------------------------------------

    def get(self, namespace: str, name: str) -> Cached | None:
        return self._objects.get((namespace, name))

    def of_model(self, namespace: str, model: str) -> list[Cached]:
        with self._lock:
            names = sorted(self._by_model.get((namespace, model), ()))
            return [self._objects[(namespace, n)] for n in names]

    def entries(self) -> list[Cached]:
        with self._lock:
            return list(self._objects.values())

    def __len__(self) -> int:
        return len(self._objects)

    # --- writing ---------------------------------------------------------------------------------------

    def _entry(self, obj: dict[str, Any]) -> Cached:
        obj = self.trim({"apiVersion": self.resource.api_version, "kind": self.resource.kind, **obj})
        meta = obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        model = labels.get(self.model_label) if self.model_label else None
        version = _version(meta)
        return Cached(
            str(meta.get("namespace") or ""),
            str(meta.get("name") or ""),
            str(model) if model else None,
            version,
            json.dumps(obj, separators=(",", ":")),
            version,
        )

    def _put(self, new: Cached) -> Cached | None:
        """Store ``new`` unless the cache holds a newer version; returns the entry it replaced (or itself,
        unchanged, when it was dropped)."""
        key = (new.namespace, new.name)
        with self._lock:
            old = self._objects.get(key)
            if old is not None and new.version and old.version >= new.version:
                return new  # an echo or an older event: nothing new
            self._objects[key] = new
            if old is not None and old.model and old.model != new.model:
                self._by_model.get((old.namespace, old.model), set()).discard(old.name)
            if new.model:
                self._by_model.setdefault((new.namespace, new.model), set()).add(new.name)
        return old

    def _drop(self, namespace: str, name: str) -> Cached | None:
        with self._lock:
            old = self._objects.pop((namespace, name), None)
            if old is not None and old.model:
                names = self._by_model.get((namespace, old.model))
                if names is not None:
                    names.discard(name)
                    if not names:
                        del self._by_model[(namespace, old.model)]
        return old

    def remember(self, obj: Mapping[str, Any]) -> None:
        """The operator's own write, from its response: cached now, not reported as a change."""
        if (obj.get("metadata") or {}).get("name"):
            self._put(self._entry(dict(obj)))

    def _apply_event(self, kind: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        cached = self._objects.get(key)
        version = _version(meta)
        if kind == "DELETED":
            if cached is not None and cached.version <= version:
                self._drop(*key)
                self.on_change(cached, None)
            return
        if cached is not None and version and cached.version >= version:
            return  # the echo of the operator's own write, or older news: not even re-encoded
        new = self._entry(obj)
        status_only = (
            cached is not None
            and not self.status_matters
            and _without_status(cached.body()) == _without_status(json.loads(new.raw))
        )
        if cached is not None and status_only:
            self._put(dataclasses.replace(new, content_version=cached.content_version))
            return  # cached, but no news
        old = self._put(new)
        if old is not new:
            self.on_change(old, new)

    # --- the thread ------------------------------------------------------------------------------------

    def _collection(self) -> str:
        if self.namespace is None:
            return f"{self.resource.base}/{self.resource.plural}"
        return self.resource.collection(self.namespace)

    def _relist(self) -> str:
        items, version = self.kube.list_with_version(self._collection(), self.query)
        listed = int(version) if version.isdigit() else 0
        seen = set()
        for item in items:
            entry = self._entry(item)
            seen.add((entry.namespace, entry.name))
            old = self._put(entry)
            if old is not entry:
                self.on_change(old, entry)
        for key, old in list(self._objects.items()):
            if key not in seen and old.version <= listed:  # newer ones were written by us since the list
                self._drop(*key)
                self.on_change(old, None)
        self.synced.set()
        return version

    def _events(self, version: str) -> Iterator[tuple[str, dict[str, Any]]]:
        query = [
            *self.query,
            ("resourceVersion", version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(WATCH_TIMEOUT_S)),
        ]
        response = self.kube.watch(self._collection(), query, READ_TIMEOUT_S)
        self._response = response
        try:
            buffer = b""
            for chunk in response.stream(65536, decode_content=True):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        event = json.loads(line)
                        yield str(event.get("type")), event.get("object") or {}
        finally:
            self._response = None
            with contextlib.suppress(Exception):
                response.release_conn()

    def _watch(self, version: str) -> str:
        """Follow the watch until it ends; returns the last version seen."""
        for kind, obj in self._events(version):
            if self._stop.is_set():
                break
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise Gone(obj.get("message"))
                raise KubeError("WATCH", self._collection(), int(obj.get("code") or 500), json.dumps(obj))
            version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
            if kind != "BOOKMARK":
                self._apply_event(kind, obj)
        return version

    def _run(self) -> None:
        version = ""
        while not self._stop.is_set():
            try:
                if not version:
                    version = self._relist()
                version = self._watch(version)
            except Gone:
                version = ""
            except Exception as exc:  # connection reset, API server restart, RBAC: retry, keep the cache
                if self._stop.is_set():
                    break
                log.warning(
                    "watch of %s in %s failed (retrying): %s",
                    self.resource.plural,
                    self.namespace or "*",
                    exc,
                )
                if isinstance(exc, KubeError) and exc.status == 410:
                    version = ""
                self._stop.wait(RETRY_S)

    def start(self) -> Informer:
        self._thread = threading.Thread(
            target=self._run, name=f"informer-{self.resource.plural}-{self.namespace or 'all'}", daemon=True
        )
        self._thread.start()
        return self

    def request_stop(self) -> None:
        """Stop the thread: the flag, and the open watch interrupted (urllib3 shutdown) so no read blocks."""
        self._stop.set()
        response = self._response
        if response is not None:
            with contextlib.suppress(Exception):
                response.shutdown()

    def stop(self, timeout_s: float = 5.0) -> None:
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout_s)
