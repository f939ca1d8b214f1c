"""Per-token log-probabilities: recorded inside ``model.generate`` and turned into protocol objects.

The values are ``log_softmax`` of the model's raw logits at each step, before temperature, top-k or top-p:
the model's own distribution, which is what vLLM returns by default and what evaluation harnesses expect.
A sampled token can therefore have a logprob below the top alternatives even though sampling chose it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import torch
from transformers import LogitsProcessor

from lmops_runtime.protocol import TokenLogprob, TopLogprob

_HEX_BYTE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


@dataclass(frozen=True)
class StepLogprobs:
    """One position: the token there, its logprob (None for a prompt's first token) and the top-n others."""

    token_id: int
    logprob: float | None
    top_ids: list[int] = field(default_factory=list)
    top_logprobs: list[float] = field(default_factory=list)


def steps_from_logprobs(logprobs: torch.Tensor, chosen: torch.Tensor, top_n: int) -> list[StepLogprobs]:
    """Rows of ``logprobs`` (positions x vocabulary) with the token chosen at each position.

    A -inf (a logit masked by the model itself) becomes -9999.0, as OpenAI reports it: JSON has no infinity.
    """
    logprobs = logprobs.nan_to_num(nan=-9999.0, neginf=-9999.0)
    picked = logprobs.gather(-1, chosen.reshape(-1, 1).to(logprobs.device)).squeeze(-1).tolist()
    ids = chosen.reshape(-1).tolist()
    if top_n:
        values, top = logprobs.topk(top_n, dim=-1)
        top_values, top_ids = values.tolist(), top.tolist()
    else:
        top_values = top_ids = [[] for _ in ids]
    return [
        StepLogprobs(int(token), float(lp), list(tids), list(tvals))
        for token, lp, tids, tvals in zip(ids, picked, top_ids, top_values, strict=True)
    ]


class LogprobRecorder(LogitsProcessor):
    """Keeps each step's raw-logit log_softmax until the chosen token is known, then records it per row.

    It must be the first custom processor (before PerRowSampler) so that it sees unmodified logits. The
    chosen token of a step is known at the next call (the last column of ``input_ids``), from a streamer's
    ``put`` (through ``step``, so a stream gets its logprobs with its tokens), or after ``generate`` returns
    (``resolve`` with the output's last column; a surplus step is cut off with the tokens after a stop).
    Only one step is ever held, never a whole generation's logits.
    """

    def __init__(self, top_n: Sequence[int | None]) -> None:
        self._top_n = list(top_n)
        self.steps: list[list[StepLogprobs]] = [[] for _ in self._top_n]
        self._pending: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._pending is not None:
            self.resolve(input_ids[:, -1])
        self._pending = scores.float().log_softmax(dim=-1)
        return scores

    def resolve(self, chosen: torch.Tensor) -> None:
        """Record the held step (if any) with the tokens chosen there."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        width = max((n for n in self._top_n if n), default=0)
        steps = steps_from_logprobs(pending, chosen, width)
        for row, n in enumerate(self._top_n):
            if n is not None:
                step = steps[row]
                self.steps[row].append(
                    StepLogprobs(step.token_id, step.logprob, step.top_ids[:n], step.top_logprobs[:n])
                )

    def step(self, row: int, position: int, chosen: torch.Tensor) -> StepLogprobs | None:
        """The logprobs of generated token ``position`` of ``row``, for a streamer that was just handed it.

        A streamer normally gets a token before the next step (so the step is still held); where generate
        hands tokens over a step late, the next call has already recorded it.
        """
        if len(self.steps[row]) <= position:
            self.resolve(chosen)
        return self.steps[row][position] if len(self.steps[row]) > position else None


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level alphabet: every byte maps to one printable character."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {byte: chr(char) for byte, char in zip(printable, chars, strict=True)}


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    return {char: byte for byte, char in _bytes_to_unicode().items()}


class TokenTexts:
    """Each token id's decoded text and raw UTF-8 bytes (cached: a vocabulary is small, requests are many).

    A byte-level token that holds part of a multi-byte character decodes to U+FFFD on its own, so the
    ``bytes`` come from the token's vocabulary string where the tokenizer is byte-level (or a SentencePiece
    ``<0xNN>`` byte token), and from the decoded text otherwise.
    """

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
        self._byte_level = "ByteLevel" in repr(decoder)
        self._cache: dict[int, tuple[str, list[int]]] = {}

    def lookup(self, token_id: int) -> tuple[str, list[int]]:
        cached = self._cache.get(token_id)
        if cached is not None:
            return cached
        text = str(self._tokenizer.decode([token_id]))
        piece = self._tokenizer.convert_ids_to_tokens(token_id)
        raw = list(text.encode("utf-8"))
        if isinstance(piece, str):
            hex_byte = _HEX_BYTE.match(piece)
            decoder = _byte_decoder()
            if hex_byte:
                raw = [int(hex_byte.group(1), 16)]
            elif self._byte_level and piece and all(char in decoder for char in piece):
                raw = [decoder[char] for char in piece]
        self._cache[token_id] = (text, raw)
        return text, raw

    def convert(self, steps: Sequence[StepLogprobs]) -> list[TokenLogprob]:
        out = []
        for step in steps:
            text, raw = self.lookup(step.token_id)
            top = None
            if step.logprob is not None:
                top = []
                for token_id, logprob in zip(step.top_ids, step.top_logprobs, strict=True):
                    top_text, top_raw = self.lookup(token_id)
                    top.append(TopLogprob(token_id=token_id, token=top_text, bytes=top_raw, logprob=logprob))
            out.append(
                TokenLogprob(token_id=step.token_id, token=text, bytes=raw, logprob=step.logprob, top=top)
            )
        return out
