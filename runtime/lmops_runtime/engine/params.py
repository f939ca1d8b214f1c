"""Turn a GenerateRequest plus the revision's defaults into validated, fully resolved sampling parameters."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypedDict

from lmops_runtime.config import GenerationDefaults, Strategy
from lmops_runtime.protocol import (
    MAX_LOGIT_BIAS,
    MAX_LOGIT_BIAS_TOKENS,
    MAX_PENALTY,
    GenerateRequest,
    InvalidRequestError,
)

MAX_BEAMS = 16
MAX_STOP_SEQUENCES = 16
#: The seeds ``torch.Generator.manual_seed`` takes.
SEED_RANGE = (-(2**63), 2**64 - 1)


@dataclass(frozen=True)
class SamplingParams:
    """What one generation does; ``top_k``/``top_p`` of None mean no filtering."""

    strategy: Strategy
    max_new_tokens: int
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    num_beams: int = 1
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: tuple[tuple[int, float], ...] = ()

    @property
    def adjusts_logits(self) -> bool:
        """Whether penalties or a logit bias change the logits before the token is picked."""
        return bool(self.presence_penalty or self.frequency_penalty or self.logit_bias)


class _LogitAdjustments(TypedDict):
    presence_penalty: float
    frequency_penalty: float
    logit_bias: tuple[tuple[int, float], ...]


def _logit_adjustments(request: GenerateRequest, vocab_size: int) -> _LogitAdjustments:
    """Validated penalties and logit bias, as SamplingParams fields."""
    for name in ("presence_penalty", "frequency_penalty"):
        value = getattr(request, name)
        if not (math.isfinite(value) and -MAX_PENALTY <= value <= MAX_PENALTY):
            raise InvalidRequestError(f"{name} must be between {-MAX_PENALTY} and {MAX_PENALTY}")
    bias = request.logit_bias
    if len(bias) > MAX_LOGIT_BIAS_TOKENS:
        raise InvalidRequestError(f"logit_bias may name at most {MAX_LOGIT_BIAS_TOKENS} tokens")
    for token, value in bias.items():
        if not 0 <= token < vocab_size:
            raise InvalidRequestError(f"logit_bias names token {token}, outside this model's vocabulary")
        if not (math.isfinite(value) and -MAX_LOGIT_BIAS <= value <= MAX_LOGIT_BIAS):
            raise InvalidRequestError(
                f"logit_bias values must be between {-MAX_LOGIT_BIAS} and {MAX_LOGIT_BIAS}"
            )
    return {
        "presence_penalty": request.presence_penalty,
        "frequency_penalty": request.frequency_penalty,
        "logit_bias": tuple(sorted((token, value) for token, value in bias.items() if value)),
    }


def resolve_params(
    request: GenerateRequest,
    defaults: GenerationDefaults,
    prompt_tokens: int,
    max_sequence_length: int,
    vocab_size: int,
) -> SamplingParams:
    """Merge request over defaults and reject what cannot be served, with a message the caller can act on."""
    strategy = request.strategy or defaults.strategy
    max_new_tokens = request.max_new_tokens if request.max_new_tokens is not None else defaults.max_new_tokens
    if max_new_tokens < (0 if request.echo else 1):
        raise InvalidRequestError("max_new_tokens must be at least 1 (0 is allowed only with echo)")
    if prompt_tokens < 1:
        raise InvalidRequestError("the prompt is empty")
    if prompt_tokens + max_new_tokens > max_sequence_length:
        raise InvalidRequestError(
            f"the prompt has {prompt_tokens} tokens and {max_new_tokens} new tokens were asked for, "
            f"more than this model's maximum sequence length of {max_sequence_length}"
        )
    stop = tuple(request.stop)
    if len(stop) > MAX_STOP_SEQUENCES:
        raise InvalidRequestError(f"at most {MAX_STOP_SEQUENCES} stop sequences are allowed")
    if any(not s for s in stop):
        raise InvalidRequestError("stop sequences must not be empty")
    if request.seed is not None and not SEED_RANGE[0] <= request.seed <= SEED_RANGE[1]:
        raise InvalidRequestError(f"seed must be between {SEED_RANGE[0]} and {SEED_RANGE[1]}")
    if request.num_beams is not None and strategy != "beam":
        raise InvalidRequestError(f"num_beams only applies to strategy beam, not {strategy}")
    logprobs = request.logprobs
    adjustments = _logit_adjustments(request, vocab_size)
    if strategy == "greedy":
        return SamplingParams(
            "greedy", max_new_tokens, stop=stop, seed=request.seed, logprobs=logprobs, **adjustments
        )
    if strategy == "beam":
        if logprobs is not None and max_new_tokens > 0:
            raise InvalidRequestError("logprobs are not available with beam search")
        if any(adjustments.values()):
            raise InvalidRequestError("penalties and logit_bias are not available with beam search")
        num_beams = request.num_beams if request.num_beams is not None else defaults.num_beams
        if not 1 <= num_beams <= MAX_BEAMS:
            raise InvalidRequestError(f"num_beams must be between 1 and {MAX_BEAMS}")
        return SamplingParams(
            "beam", max_new_tokens, num_beams=num_beams, stop=stop, seed=request.seed, logprobs=logprobs
        )
    temperature = request.temperature if request.temperature is not None else defaults.temperature
    top_k = request.top_k if request.top_k is not None else defaults.top_k
    top_p = request.top_p if request.top_p is not None else defaults.top_p
    if not (math.isfinite(temperature) and temperature > 0):
        raise InvalidRequestError(
            "temperature must be a finite number greater than 0 for sampling (use strategy greedy instead)"
        )
    if top_k is not None and top_k < 1:
        raise InvalidRequestError("top_k must be at least 1")
    if top_p is not None and not 0 < top_p <= 1:
        raise InvalidRequestError("top_p must be in (0, 1]")
    return SamplingParams(
        "sample",
        max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        stop=stop,
        seed=request.seed,
        logprobs=logprobs,
        **adjustments,
    )
