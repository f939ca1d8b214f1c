"""Classification and embedding on tiny BERT models: probabilities, normalisation, batching invariance."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from lmops_runtime.config import ModelSpec
from lmops_runtime.engine.encoders import classify, embed
from lmops_runtime.loading import LoadedModel, load_model
from lmops_runtime.protocol import InvalidRequestError

TEXTS = ["I loved it", "terrible", "a much longer sentence about nothing in particular, padded in a batch"]


@pytest.fixture(scope="module")
def classifier(tiny_classify_model_dir: Path) -> LoadedModel:
    return load_model(ModelSpec(source=f"file://{tiny_classify_model_dir}", task="classify"))


@pytest.fixture(scope="module")
def embedder(tiny_embed_model_dir: Path) -> LoadedModel:
    return load_model(
        ModelSpec(source=f"file://{tiny_embed_model_dir}", task="embed", max_sequence_length=80)
    )


def test_classify_scores_are_probabilities_best_first(
    classifier: LoadedModel, tiny_classify_labels: list[str]
) -> None:
    predictions, lengths = classify(classifier, TEXTS)
    assert len(predictions) == len(TEXTS)
    for row in predictions:
        assert sorted(score.label for score in row) == sorted(tiny_classify_labels)
        assert math.isclose(sum(score.score for score in row), 1.0, rel_tol=1e-5)
        assert [s.score for s in row] == sorted((s.score for s in row), reverse=True)
    # [CLS] + one token per byte + [SEP]
    assert lengths == [len(text.encode()) + 2 for text in TEXTS]


def test_classify_batch_equals_single(classifier: LoadedModel) -> None:
    batched, _ = classify(classifier, TEXTS)
    for text, row in zip(TEXTS, batched, strict=True):
        (single,), _ = classify(classifier, [text])
        assert [s.label for s in single] == [s.label for s in row]
        assert [s.score for s in single] == pytest.approx([s.score for s in row], abs=1e-5)


def test_embeddings_are_normalised_and_deterministic(embedder: LoadedModel) -> None:
    vectors, lengths = embed(embedder, TEXTS)
    assert len(vectors) == len(TEXTS)
    assert {len(v) for v in vectors} == {embedder.model.config.hidden_size}
    for vector in vectors:
        assert torch.linalg.vector_norm(torch.tensor(vector)).item() == pytest.approx(1.0, abs=1e-5)
    # Padding in a batch does not change a text's vector (mean pooling follows the attention mask).
    (alone,), _ = embed(embedder, [TEXTS[0]])
    assert alone == pytest.approx(vectors[0], abs=1e-5)
    (again,), _ = embed(embedder, [TEXTS[0]])
    assert again == alone
    assert vectors[0] != pytest.approx(vectors[1], abs=1e-3)
    assert sum(lengths) == sum(len(t.encode()) + 2 for t in TEXTS)


def test_texts_are_validated(embedder: LoadedModel) -> None:
    with pytest.raises(InvalidRequestError, match="must not be empty"):
        embed(embedder, [])
    with pytest.raises(InvalidRequestError, match="maximum of 80"):
        embed(embedder, ["x" * 100])
