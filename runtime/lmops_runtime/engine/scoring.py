"""Teacher-forced log-likelihood of whole texts, for perplexity (the quality gate's second metric).

Each text is scored as the sum of log p(token_i | tokens_<i) over its tokens after the first; the first has
no context to be predicted from. Texts are right-padded so default position ids stay those of an unpadded
run, and scored in small chunks so a 256-text request never builds one huge logits tensor.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lmops_runtime.engine.encoders import check_length
from lmops_runtime.engine.logprobs import StepLogprobs, steps_from_logprobs
from lmops_runtime.loading import LoadedModel

# Texts per forward pass: logits are batch x length x vocabulary floats.
SCORE_CHUNK = 8
# Positions per log_softmax when scoring one prompt token by token (bounds the float32 copy of the logits).
POSITION_CHUNK = 256


def _score_chunk(loaded: LoadedModel, ids: list[list[int]]) -> list[float]:
    width = max(len(row) for row in ids)
    pad = int(loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0)
    input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, row in enumerate(ids):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    input_ids, mask = input_ids.to(loaded.device), mask.to(loaded.device)
    with torch.inference_mode():
        logits = loaded.model(input_ids=input_ids, attention_mask=mask).logits.float()
    logprobs = logits[:, :-1].log_softmax(dim=-1)
    targets = input_ids[:, 1:]
    picked = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1) * mask[:, 1:]
    return [float(value) for value in picked.sum(dim=-1).cpu()]


def score_texts(loaded: LoadedModel, texts: Sequence[str]) -> tuple[list[float], list[int]]:
    """(log-likelihood, scored token count) per text; a one-token text scores 0.0 over 0 tokens.

    Raises InvalidRequestError (through ``check_length``) for an empty request or a text too long.
    """
    check_length(loaded, texts)
    all_ids: list[list[int]] = [list(row) for row in loaded.tokenizer(list(texts))["input_ids"]]
    log_likelihoods: list[float] = []
    for start in range(0, len(all_ids), SCORE_CHUNK):
        chunk = all_ids[start : start + SCORE_CHUNK]
        scorable = [row for row in chunk if len(row) >= 2]
        values = iter(_score_chunk(loaded, scorable) if scorable else [])
        log_likelihoods += [next(values) if len(row) >= 2 else 0.0 for row in chunk]
    return log_likelihoods, [max(len(row) - 1, 0) for row in all_ids]


def prompt_logprobs(loaded: LoadedModel, ids: Sequence[int], top_n: int) -> list[StepLogprobs]:
    """Teacher-forced logprob of every prompt token (the first has none) with its ``top_n`` alternatives.

    The same forward pass and log_softmax as ``score_texts``, so an echoed prompt's logprobs sum to its
    ``/v1/score`` log-likelihood. Callers hold the model exclusively (see ``TextGenerator.run_exclusive``).
    """
    row = torch.tensor([list(ids)], dtype=torch.long, device=loaded.device)
    steps = [StepLogprobs(int(ids[0]), None)]
    if len(ids) < 2:
        return steps
    with torch.inference_mode():
        logits = loaded.model(input_ids=row, attention_mask=torch.ones_like(row)).logits[0]
        for start in range(0, len(ids) - 1, POSITION_CHUNK):
            end = min(start + POSITION_CHUNK, len(ids) - 1)
            logprobs = logits[start:end].float().log_softmax(dim=-1)
            steps += steps_from_logprobs(logprobs, row[0, start + 1 : end + 1], top_n)
    return steps
