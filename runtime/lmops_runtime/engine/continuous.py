"""Continuous batching through transformers' ContinuousBatchingManager, one persistent manager per replica.

Requests join and leave the running batch at every decode step, so a short request never waits for a long one.
The manager samples for the whole batch, with per-request temperature, top-k and top-p; greedy requests are
sampled with top-k 1, which is argmax. Its generation thread is made a daemon (see ``_start``) and ``close``
is also registered with ``atexit``, so the thread can never keep a process alive.

The manager ends its thread on any error in a step and fails the requests in it. One such error must not cost
the replica, so the next request (or health check) starts the thread again, and a request whose thread
died under it fails at once instead of waiting forever.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import logging
import math
import threading
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from transformers import GenerationConfig
from transformers.generation.configuration_utils import ContinuousBatchingConfig

from lmops_runtime.config import BatchingConfig
from lmops_runtime.engine.params import SamplingParams
from lmops_runtime.engine.tokens import TokenUpdate, trim_finished

log = logging.getLogger(__name__)

PAGE_SIZE = 32
STOP_TIMEOUT_S = 10.0
#: How often a waiting request checks that the generation thread still lives.
LIVENESS_POLL_S = 1.0
_THREAD_STOPPED = object()


def cb_config(batching: BatchingConfig, max_sequence_length: int) -> ContinuousBatchingConfig:
    """Explicit sizes: enough KV pages for a full batch of maximum-length sequences, no device probing."""
    pages_per_sequence = math.ceil(max_sequence_length / PAGE_SIZE)
    return ContinuousBatchingConfig(
        page_size=PAGE_SIZE,
        num_blocks=batching.max_batch_size * pages_per_sequence + 1,
        max_batch_tokens=max(batching.max_batch_size * PAGE_SIZE, 256),
        max_requests_per_batch=batching.max_batch_size,
        per_request_processors=True,
        use_cuda_graph=False,
        allow_block_sharing=False,
        scheduler_type="fifo",
    )


class _LivenessWatch:
    """Puts ``_THREAD_STOPPED`` on a waiting request's queue once the generation thread is gone.

    A timer per request, checking every LIVENESS_POLL_S, rather than a timeout on every token's wait: the
    token path costs nothing more.
    """

    def __init__(self, alive: Callable[[], bool], queue: asyncio.Queue[Any]) -> None:
        self._alive = alive
        self._queue = queue
        self._loop = asyncio.get_running_loop()
        self._handle = self._loop.call_later(LIVENESS_POLL_S, self._check)

    def _check(self) -> None:
        if self._alive():
            self._handle = self._loop.call_later(LIVENESS_POLL_S, self._check)
        else:
            self._queue.put_nowait(_THREAD_STOPPED)

    def cancel(self) -> None:
        self._handle.cancel()


class ContinuousBatcher:
    """Async front of one ContinuousBatchingManager."""

    def __init__(
        self,
        model: Any,
        eos_ids: Sequence[int],
        pad_id: int,
        batching: BatchingConfig,
        max_sequence_length: int,
        vocab_size: int,
    ) -> None:
        self._vocab_size = vocab_size
        self._eos_ids = list(eos_ids)
        # Temperature and top-p differ from 1 so that generate builds their processors, which the manager then
        # turns into per-request ones; every request passes its own values, so these defaults never apply.
        config = GenerationConfig(  # type: ignore[no-untyped-call]
            do_sample=True,
            temperature=0.5,
            top_k=self._vocab_size,
            top_p=0.5,
            eos_token_id=self._eos_ids or -1,
            pad_token_id=pad_id,
            max_new_tokens=max_sequence_length,
        )
        self._manager = model.init_continuous_batching(
            generation_config=config, continuous_batching_config=cb_config(batching, max_sequence_length)
        )
        self._ids = itertools.count()
        self._max_batch = batching.max_batch_size
        self._active = 0  # sequences added to the manager and not finished or cancelled yet
        self._start_lock = threading.Lock()
        self._closed = False
        self._start()
        atexit.register(self.close)

    def _start(self) -> None:
        # A thread inherits its daemon flag from the thread that creates it. Started from a daemon thread, the
        # generation thread is a daemon too, so a process that never reaches close() (a crash, a failing
        # test) still exits: Python joins non-daemon threads before any atexit handler could stop them.
        starter = threading.Thread(target=self._manager.start, name="lmops-cb-start", daemon=True)
        starter.start()
        starter.join()

    @property
    def running(self) -> bool:
        return bool(self._manager.is_running())

    def ensure_running(self) -> None:
        """Start the generation thread again if an error ended it; raise once closed or if it won't start."""
        if self.running:
            return
        with self._start_lock:
            if self._closed:
                raise RuntimeError("the continuous batching manager is closed")
            if self.running:
                return
            log.warning(
                "restarting the continuous batching thread, which stopped on: %r",
                self._manager.background_thread_status.fatal_error,
            )
            self._start()
        if not self.running:
            raise RuntimeError("the continuous batching thread is not running and did not restart")

    async def run(self, row: Sequence[int], params: SamplingParams) -> AsyncGenerator[TokenUpdate]:
        """Yield cumulative tokens as they come; cancels the request if the caller stops listening."""
        self.ensure_running()
        request_id = f"lmops-{next(self._ids)}"
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._manager.register_result_handler(request_id, queue.put_nowait)
        sampled = params.strategy == "sample"
        self._manager.add_request(
            list(row),
            request_id=request_id,
            max_new_tokens=params.max_new_tokens,
            streaming=True,
            temperature=float(params.temperature) if sampled else 1.0,
            # A top-k beyond the vocabulary filters nothing; clamped, it also fits the manager's int32 tensor.
            top_k=min(int(params.top_k or self._vocab_size), self._vocab_size) if sampled else 1,
            top_p=float(params.top_p or 1.0) if sampled else 1.0,
        )
        finished = False
        watch = _LivenessWatch(lambda: self.running, queue)
        self._active += 1
        try:
            while True:
                output = await queue.get()
                if output is _THREAD_STOPPED:
                    raise RuntimeError("the continuous batching thread stopped during this request")
                if output.error is not None:
                    finished = True
                    raise RuntimeError(f"generation failed: {output.error}")
                if output.is_finished():
                    finished = True
                    yield trim_finished(list(output.generated_tokens), self._eos_ids, params.max_new_tokens)
                    return
                yield TokenUpdate(list(output.generated_tokens))
        finally:
            self._active -= 1
            watch.cancel()
            if not finished:
                self._manager.cancel_request(request_id)
                # A cancelled request never finishes, so its handler would never be cleaned up by the manager.
                router = self._manager.output_router
                with router._lock:
                    router.result_handlers.pop(request_id, None)

    @property
    def waiting(self) -> int:
        """Sequences beyond the manager's batch (``max_requests_per_batch``): its queue length."""
        return max(0, self._active - self._max_batch)

    def paused(self) -> AbstractContextManager[None]:
        """Hold the generation loop between two steps, so another thread may use the model.

        Two threads running forward passes of one model at once corrupted outputs here (seen on CPU: plain
        ``generate`` beside the manager returned wrong tokens), so every other use of the model holds this.
        """
        self.ensure_running()
        return self._manager.pause()  # type: ignore[no-any-return]

    def close(self) -> None:
        """Stop the generation thread (idempotent); pending requests are failed rather than waited for."""
        atexit.unregister(self.close)
        with self._start_lock:
            self._closed = True
        if self._manager.is_running():
            self._manager.stop(block=True, timeout=STOP_TIMEOUT_S, hard_stop=True)
            if self._manager.is_running():
                log.warning("continuous batching thread did not stop within %.0f s", STOP_TIMEOUT_S)
