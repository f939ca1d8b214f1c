"""OpenAI request parsing and its mapping onto the ModelServer protocol (pure, no Ray)."""

from __future__ import annotations

import base64
import struct

import pytest
from pydantic import ValidationError

from lmops_runtime.router.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    SeedGenerateRequest,
    TextsRequest,
    encode_embedding,
)


def test_completion_maps_openai_sampling_to_strategies() -> None:
    greedy_request = CompletionRequest(model="m", prompt="hi", temperature=0.0, max_tokens=5)
    (greedy,) = greedy_request.to_generate_requests()
    assert (greedy.strategy, greedy.temperature, greedy.max_new_tokens) == ("greedy", None, 5)
    sample = CompletionRequest(
        model="m", prompt=["hi"], temperature=0.7, stop="\n", seed=3
    ).to_generate_requests()[0]
    assert (sample.strategy, sample.temperature, sample.stop, sample.seed, sample.prompt) == (
        "sample",
        0.7,
        ["\n"],
        3,
        "hi",
    )
    assert CompletionRequest(model="m", prompt="x", top_p=0.9).to_generate_requests()[0].strategy == "sample"
    assert CompletionRequest(model="m", prompt="x", num_beams=3).to_generate_requests()[0].strategy == "beam"
    assert CompletionRequest(model="m", prompt="x").to_generate_requests()[0].strategy is None


@pytest.mark.parametrize(
    "body",
    [
        {"model": "m", "prompt": ["a"] * 17},
        {"model": "m", "prompt": ["a"] * 4, "n": 5},
        {"model": "m", "prompt": "a", "n": 17},
        {"model": "m", "prompt": "a", "logprobs": 6},
        {"model": "m", "prompt": "a", "best_of": 3},
        {"model": "m", "prompt": "a", "max_tokens": 0},
        {"model": "m", "prompt": 3},
        {"model": "m", "prompt": "a", "temperature": "hot"},
        {"prompt": "a"},
    ],
)
def test_bad_completion_bodies_are_rejected(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        CompletionRequest.model_validate(body)


def test_chat_messages_and_token_budget() -> None:
    req = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [
                {"role": "developer", "content": "be brief"},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "he"}, {"type": "text", "text": "llo"}],
                },
            ],
            "max_tokens": 9,
            "max_completion_tokens": 4,
        }
    )
    gen = req.to_generate_requests()[0]
    assert gen.prompt is None and gen.max_new_tokens == 4
    assert [(m.role, m.content) for m in gen.messages or []] == [("system", "be brief"), ("user", "hello")]
    with pytest.raises(ValidationError):
        ChatCompletionRequest.model_validate({"model": "m", "messages": []})


def test_embedding_base64_is_little_endian_float32() -> None:
    encoded = encode_embedding([1.0, -2.5], "base64")
    assert isinstance(encoded, str)
    assert struct.unpack("<2f", base64.b64decode(encoded)) == (1.0, -2.5)
    assert EmbeddingRequest(model="m", input="x").texts() == ["x"]


def test_seed_endpoints() -> None:
    assert SeedGenerateRequest(prompt="p", strategy="beam", num_beams=2).to_generate_request().num_beams == 2
    assert TextsRequest(text="a").all_texts() == ["a"]
    assert TextsRequest(texts=["a", "b"]).all_texts() == ["a", "b"]
    for bad in (TextsRequest(), TextsRequest(text="a", texts=["b"]), TextsRequest(texts=[])):
        with pytest.raises(ValueError):
            bad.all_texts()
