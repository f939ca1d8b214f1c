"""Models waiting for a reconcile: each queued at most once, reconciled by one worker at a time.

Watch events arrive in bursts (a create brings the model and five children; KubeRay rewrites a status
several times while it starts Serve): the queue folds every event for a model into one pending reconcile,
and an event during that model's reconcile into exactly one more after it. Workers run only while the queue
is open: once the caches have synced (no decision on a half-listed world) and while peering lets this replica
act. Keys queued while it is closed wait, so a replica taking over reconciles what changed meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)
Key = tuple[str, str]
WORKERS = 16


class WorkQueue:
    def __init__(self, workers: int = WORKERS) -> None:
        # (namespace, name, timed) -> None; set before ``start``
        self.work: Callable[[str, str, bool], Awaitable[None]] | None = None
        self.workers = workers
        # Two ordered sets: what an event queued comes first, what a timer queued (a rollout's poll, a retry)
        # when no event waits, so a thousand polling models never delay a status KubeRay just reported.
        self._events: dict[Key, None] = {}
        self._ticks: dict[Key, None] = {}
        self._running: set[Key] = set()
        self._again: set[Key] = set()  # an event came during the model's reconcile: once more after it
        self._again_timed: set[Key] = set()  # its timer fired during it
        self._timed: set[Key] = set()  # queued by a timer: the work function is told so
        self._ready = asyncio.Event()
        self._open = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """Start the workers on the running loop (closed until ``set_open(True)``)."""
        self._loop = asyncio.get_running_loop()
        self._tasks = [
            asyncio.create_task(self._worker(), name=f"lmops-worker-{i}") for i in range(self.workers)
        ]

    async def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def add(self, namespace: str, name: str) -> None:
        """Queue a reconcile of ``namespace/name`` for an event (on the loop's thread)."""
        self._add((namespace, name), timed=False)

    def _add(self, key: Key, timed: bool) -> None:
        if timed:
            self._timed.add(key)
        if key in self._running:
            (self._again_timed if timed else self._again).add(key)
        elif timed:
            if key not in self._events:
                self._ticks[key] = None
        else:
            self._ticks.pop(key, None)  # an event for a model waiting on a timer: it goes first now
            self._events[key] = None
        self._ready.set()

    def add_threadsafe(self, namespace: str, name: str) -> None:
        """``add`` from an informer's thread."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.add, namespace, name)

    def add_later(self, delay_s: float, namespace: str, name: str) -> None:
        """Queue ``namespace/name`` after ``delay_s``: one timer per model, the latest request wins (a
        rollout step's wait, a retry); the timer only queues, so a closed queue still holds it back."""
        if self._loop is None:
            return
        key = (namespace, name)
        previous = self._timers.pop(key, None)
        if previous is not None:
            previous.cancel()

        def fire() -> None:
            self._timers.pop(key, None)
            self._add(key, timed=True)

        self._timers[key] = self._loop.call_later(delay_s, fire)

    def set_open(self, value: bool) -> None:
        if value and not self._open.is_set():
            log.info("work queue open: %d models queued", len(self._events) + len(self._ticks))
            self._open.set()
        elif not value and self._open.is_set():
            log.info("work queue closed (peering): reconciles wait")
            self._open.clear()

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    def __len__(self) -> int:
        return len(self._events) + len(self._ticks) + len(self._running)

    async def _next(self) -> Key:
        while True:
            await self._open.wait()
            for pending in (self._events, self._ticks):
                if pending:
                    key = next(iter(pending))
                    del pending[key]
                    return key
            self._ready.clear()
            await self._ready.wait()

    async def _worker(self) -> None:
        while True:
            key = await self._next()
            self._running.add(key)
            timed = key in self._timed
            self._timed.discard(key)
            try:
                assert self.work is not None, "WorkQueue.work is set before start"
                await self.work(*key, timed)
            except Exception:  # the work function reports and schedules its own retries
                log.exception("reconcile of %s/%s raised", *key)
            finally:
                self._running.discard(key)
                if key in self._again_timed:
                    self._again_timed.discard(key)
                    self._add(key, timed=True)
                if key in self._again:
                    self._again.discard(key)
                    self._add(key, timed=False)
