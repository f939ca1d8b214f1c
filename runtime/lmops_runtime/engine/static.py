"""Static batching: concurrent calls gathered into one padded ``model.generate``.

The alternative to continuous batching (for a model without paged-attention support, for one). Rows keep their
own sampling parameters and seeds through PerRowSampler, so one batch can mix requests freely.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from lmops_runtime.config import BatchingConfig
from lmops_runtime.engine.batching import MicroBatcher
from lmops_runtime.engine.params import SamplingParams
from lmops_runtime.engine.solo import generate_rows
from lmops_runtime.engine.tokens import TokenUpdate

Item = tuple[list[int], SamplingParams]


class StaticBatcher:
    """Collects up to ``max_batch_size`` calls within ``batch_wait_timeout_s`` and generates them together."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        eos_ids: Sequence[int],
        batching: BatchingConfig,
        executor: ThreadPoolExecutor,
    ) -> None:
        self._model = model
        self._tokenizer = tokenizer
        self._eos_ids = list(eos_ids)
        self._executor = executor
        self._batcher: MicroBatcher[Item, TokenUpdate] = MicroBatcher(self._generate_batch, batching)

    async def generate(self, row: Sequence[int], params: SamplingParams) -> TokenUpdate:
        return await self._batcher.submit((list(row), params))

    async def _generate_batch(self, items: list[Item]) -> list[TokenUpdate]:
        loop = asyncio.get_running_loop()
        rows = [row for row, _ in items]
        params = [p for _, p in items]
        return await loop.run_in_executor(
            self._executor, generate_rows, self._model, self._tokenizer, rows, params, self._eos_ids
        )

    @property
    def waiting(self) -> int:
        """Calls waiting for the next batch."""
        return self._batcher.waiting

    def close(self) -> None:
        self._batcher.close()
