"""Stop a row of a batched ``model.generate`` as soon as its text contains one of its stop sequences."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import StoppingCriteria


class PerRowStopStrings(StoppingCriteria):
    """Each row has its own stop sequences; ``stopped_at[row]`` records how many tokens it had generated."""

    def __init__(self, tokenizer: Any, prompt_length: int, stops: Sequence[Sequence[str]]) -> None:
        self._tokenizer = tokenizer
        self._prompt_length = prompt_length
        self._stops = [tuple(row) for row in stops]
        self.stopped_at: list[int | None] = [None] * len(self._stops)

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any
    ) -> torch.BoolTensor:
        generated = input_ids.shape[1] - self._prompt_length
        for row, stops in enumerate(self._stops):
            if not stops or self.stopped_at[row] is not None:
                continue
            text = self._tokenizer.decode(input_ids[row, self._prompt_length :], skip_special_tokens=True)
            if any(stop in text for stop in stops):
                self.stopped_at[row] = generated
        done = [at is not None for at in self.stopped_at]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)  # type: ignore[return-value]
