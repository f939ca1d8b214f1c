"""What every generation backend reports while it runs: the tokens so far and, at the end, why it stopped."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lmops_runtime.engine.logprobs import StepLogprobs
from lmops_runtime.protocol import FinishReason


@dataclass(frozen=True)
class TokenUpdate:
    """Cumulative generated token ids; ``finish_reason`` is set on the last update only.

    ``logprobs`` (one per token, cumulative too) is set by the backends that record them (solo) when the
    request asked for logprobs.
    """

    tokens: list[int]
    finish_reason: FinishReason | None = None
    logprobs: list[StepLogprobs] | None = None


def eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """End-of-sequence ids from the generation config (which may list several), else the tokenizer's."""
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if config_eos is None:
        config_eos = tokenizer.eos_token_id
    if config_eos is None:
        return []
    return [int(config_eos)] if isinstance(config_eos, int) else [int(token) for token in config_eos]


def trim_finished(tokens: Sequence[int], eos_ids: Sequence[int], max_new_tokens: int) -> TokenUpdate:
    """Cut a finished sequence after its first end-of-sequence token (padding follows it in a batch)."""
    for index, token in enumerate(tokens):
        if token in eos_ids:
            return TokenUpdate(list(tokens[: index + 1]), "stop")
    kept = list(tokens[:max_new_tokens])
    return TokenUpdate(kept, "length" if len(kept) >= max_new_tokens else "stop")
