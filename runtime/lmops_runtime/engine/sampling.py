"""Per-row logits processing inside ``model.generate``, so each request keeps its own parameters.

``generate`` applies one temperature/top-k/top-p to a whole batch and draws from the global torch RNG, which
other requests (and the continuous batching thread) share, so a seed would not reproduce. PerRowSampler
instead samples each row itself with the row's own ``torch.Generator`` and leaves a single finite logit,
which ``generate`` in greedy mode then picks. PerRowLogitAdjuster applies each row's OpenAI penalties and
logit bias before that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import LogitsProcessor

from lmops_runtime.engine.params import SamplingParams


@dataclass
class RowSampling:
    """How one row picks its next token; ``generator`` None means greedy (argmax)."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    generator: torch.Generator | None = None

    @classmethod
    def for_params(cls, params: SamplingParams) -> RowSampling:
        if params.strategy != "sample":
            return cls()
        generator = torch.Generator(device="cpu")
        if params.seed is not None:
            generator.manual_seed(params.seed)
        else:
            generator.seed()
        return cls(params.temperature, params.top_k, params.top_p, generator)


def filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Top-k, then nucleus filtering of one row of logits (already divided by the temperature)."""
    if top_k is not None and top_k < logits.size(-1):
        threshold = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < threshold, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        # Keep a token while the mass before it is still below top_p (so the first token is always kept).
        remove_sorted = (cumulative - sorted_logits.softmax(-1)) >= top_p
        remove = torch.zeros_like(remove_sorted).scatter(0, order, remove_sorted)
        logits = logits.masked_fill(remove, float("-inf"))
    return logits


class PerRowSampler(LogitsProcessor):
    """Sample sampled rows with their own generators; greedy rows keep their logits for argmax."""

    def __init__(self, rows: Sequence[RowSampling]) -> None:
        self._rows = list(rows)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        out = scores.clone()
        for index, row in enumerate(self._rows):
            if row.generator is None:
                continue
            logits = filter_logits(scores[index].float() / row.temperature, row.top_k, row.top_p)
            probs = logits.softmax(-1).cpu()
            choice = int(torch.multinomial(probs, 1, generator=row.generator).item())
            out[index].fill_(float("-inf"))
            out[index, choice] = 0.0
        return out  # type: ignore[return-value]


class PerRowLogitAdjuster(LogitsProcessor):
    """Each row's frequency and presence penalties, then its logit bias, as OpenAI defines them.

    The penalties count the tokens this call generated (those after the padded prompt), as vLLM does:
    ``logit -= frequency_penalty * count + presence_penalty * (count > 0)``.
    """

    def __init__(self, params: Sequence[SamplingParams], prompt_width: int) -> None:
        self._rows = [(index, p) for index, p in enumerate(params) if p.adjusts_logits]
        self._width = prompt_width

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        out = scores.clone()
        vocab = out.size(-1)
        for index, p in self._rows:
            row = out[index]
            if p.frequency_penalty or p.presence_penalty:
                counts = torch.bincount(input_ids[index, self._width :], minlength=vocab)[:vocab]
                seen = (counts > 0).to(row.dtype)
                row -= p.frequency_penalty * counts.to(row.dtype) + p.presence_penalty * seen
            if p.logit_bias:
                tokens, values = zip(*p.logit_bias, strict=True)
                row[torch.tensor(tokens, device=row.device)] += torch.tensor(
                    values, dtype=row.dtype, device=row.device
                )
        return out  # type: ignore[return-value]
