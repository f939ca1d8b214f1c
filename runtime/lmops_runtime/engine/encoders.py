"""Classification and embedding: one padded forward pass over a batch of texts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from lmops_runtime.loading import LoadedModel
from lmops_runtime.protocol import InvalidRequestError, LabelScore

MAX_TEXTS = 256


def validate_texts(texts: Sequence[str]) -> None:
    if not texts:
        raise InvalidRequestError("texts must not be empty")
    if len(texts) > MAX_TEXTS:
        raise InvalidRequestError(f"at most {MAX_TEXTS} texts per request")


def _encode(loaded: LoadedModel, texts: Sequence[str]) -> tuple[dict[str, torch.Tensor], list[int]]:
    """Tokenize a batch (rejecting texts too long for the model); returns inputs and token counts."""
    lengths = check_length(loaded, texts)
    batch = loaded.tokenizer(list(texts), padding=True, return_tensors="pt")
    return {name: tensor.to(loaded.device) for name, tensor in batch.items()}, lengths


def classify(loaded: LoadedModel, texts: Sequence[str]) -> tuple[list[list[LabelScore]], list[int]]:
    """Softmax over the labels for every text, best label first."""
    inputs, tokens = _encode(loaded, texts)
    with torch.inference_mode():
        logits = loaded.model(**inputs).logits.float()
    probabilities = logits.softmax(dim=-1).cpu().tolist()
    predictions = [
        sorted(
            (LabelScore(label=label, score=score) for label, score in zip(loaded.labels, row, strict=True)),
            key=lambda item: item.score,
            reverse=True,
        )
        for row in probabilities
    ]
    return predictions, tokens


def check_length(loaded: LoadedModel, texts: Sequence[str]) -> list[int]:
    """Each text's token count; raises InvalidRequestError for a text the model cannot take."""
    validate_texts(texts)
    lengths = [len(ids) for ids in loaded.tokenizer(list(texts))["input_ids"]]
    if max(lengths) > loaded.max_sequence_length:
        raise InvalidRequestError(
            f"a text has {max(lengths)} tokens, more than this model's maximum of "
            f"{loaded.max_sequence_length}"
        )
    return lengths


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the non-padding token vectors, L2-normalised so a dot product is cosine similarity."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
    return torch.nn.functional.normalize(pooled.float(), p=2, dim=-1)


def embed(loaded: LoadedModel, texts: Sequence[str]) -> tuple[list[list[float]], list[int]]:
    inputs, tokens = _encode(loaded, texts)
    with torch.inference_mode():
        output: Any = loaded.model(**inputs)
    vectors = mean_pool(output.last_hidden_state, inputs["attention_mask"])
    return vectors.cpu().tolist(), tokens
