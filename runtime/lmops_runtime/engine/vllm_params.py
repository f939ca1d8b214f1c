"""What the vLLM engine hands vLLM and gets back, as plain data: no vLLM import, so unit tests run anywhere.

lmops resolves and validates every request with the same code for both engines (``resolve_params``); this
module turns the result into vLLM ``SamplingParams`` keyword arguments and turns vLLM's per-position logprob
dictionaries back into lmops' ``StepLogprobs``. Keeping the engines' request semantics in one place is what
makes an OpenAI parameter behave the same whichever engine serves a revision.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from lmops_runtime.engine.logprobs import StepLogprobs
from lmops_runtime.engine.params import SamplingParams
from lmops_runtime.protocol import InvalidRequestError

#: OpenAI reports a logprob of -inf (a logit the model masked) as this; JSON has no infinity.
MASKED_LOGPROB = -9999.0


class VllmLogprob(Protocol):
    """The fields of ``vllm.logprobs.Logprob`` this module reads."""

    logprob: float
    rank: int | None


def sampling_kwargs(params: SamplingParams, *, echo: bool) -> dict[str, Any]:
    """Keyword arguments of ``vllm.SamplingParams`` for one resolved lmops request.

    Greedy is temperature 0 (vLLM's greedy); unset top-k/top-p disable the filter (0 and 1.0 in vLLM).
    Logprobs are vLLM's default raw logprobs (before temperature and penalties), the same distribution the
    transformers engine reports. An echo-only request (``max_new_tokens`` 0) still asks vLLM for one token,
    which the engine drops: vLLM always generates at least one.
    """
    if params.strategy == "beam":
        raise InvalidRequestError(
            "strategy beam (num_beams) is not available on the vLLM engine; use greedy or sample, or serve "
            "the model with spec.model.engine transformers"
        )
    kwargs: dict[str, Any] = {
        "max_tokens": max(1, params.max_new_tokens),
        "stop": list(params.stop) or None,
        "seed": params.seed,
        "logprobs": params.logprobs,
        "prompt_logprobs": params.logprobs if echo and params.logprobs is not None else None,
        "presence_penalty": params.presence_penalty,
        "frequency_penalty": params.frequency_penalty,
        "logit_bias": dict(params.logit_bias) or None,
        "skip_special_tokens": True,
    }
    if params.strategy == "greedy":
        kwargs["temperature"] = 0.0
    else:
        kwargs["temperature"] = params.temperature
        kwargs["top_k"] = params.top_k if params.top_k is not None else 0
        kwargs["top_p"] = params.top_p if params.top_p is not None else 1.0
    return kwargs


def _finite(value: float) -> float:
    return value if math.isfinite(value) else MASKED_LOGPROB


def step_logprobs(
    token_id: int, position: Mapping[int, VllmLogprob] | None, top_n: int | None
) -> StepLogprobs:
    """One position of vLLM's logprobs: the chosen token's logprob and the ``top_n`` best, best first.

    vLLM returns the top-n by rank plus the chosen token when it is not among them; a position without a
    dictionary (a prompt's first token) has no logprob, as in the transformers engine.
    """
    if position is None:
        return StepLogprobs(token_id, None)
    chosen = position.get(token_id)
    if chosen is None:
        raise RuntimeError(f"vLLM returned no logprob for the chosen token {token_id}")
    ranked = sorted(
        ((entry.rank, tid, entry.logprob) for tid, entry in position.items() if entry.rank is not None),
        key=lambda item: item[0],
    )
    top = [(tid, _finite(lp)) for rank, tid, lp in ranked if rank <= (top_n or 0)]
    return StepLogprobs(token_id, _finite(chosen.logprob), [tid for tid, _ in top], [lp for _, lp in top])


def steps_from_vllm(
    token_ids: Sequence[int], positions: Sequence[Mapping[int, VllmLogprob] | None], top_n: int | None
) -> list[StepLogprobs]:
    """Every position of a generated (or prompt) token list, zipped with vLLM's logprobs for it."""
    if len(positions) != len(token_ids):
        raise RuntimeError(f"vLLM returned logprobs for {len(positions)} of {len(token_ids)} tokens")
    return [step_logprobs(t, p, top_n) for t, p in zip(token_ids, positions, strict=True)]


def prompt_log_likelihood(steps: Sequence[StepLogprobs]) -> tuple[float, int]:
    """A prompt's teacher-forced log-likelihood (tokens after the first) and how many tokens it sums."""
    values = [step.logprob for step in steps[1:] if step.logprob is not None]
    return float(sum(values)), max(len(steps) - 1, 0)
