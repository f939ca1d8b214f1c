"""OpenAI parity pieces without Ray: request schemas (n, best_of, echo, prompt lists), response formats, and
the engine's logprobs checked against a direct ``model(input_ids).logits.log_softmax`` on the tiny model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from lmops_runtime.config import BatchingConfig, ModelSpec
from lmops_runtime.engine.generator import TextGenerator
from lmops_runtime.engine.logprobs import TokenTexts
from lmops_runtime.engine.scoring import score_texts
from lmops_runtime.loading import LoadedModel, load_model
from lmops_runtime.protocol import GenerateRequest, InvalidRequestError, TokenLogprob, TopLogprob
from lmops_runtime.router.openai_format import chat_logprobs, completion_logprobs, summed_usage
from lmops_runtime.router.schemas import MAX_CHOICES, ChatCompletionRequest, CompletionRequest

TOLERANCE = 1e-4

# ---- schemas -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"prompt": "a", "n": MAX_CHOICES + 1}, "less than or equal"),
        ({"prompt": ["a"] * 9, "n": 2}, "more than the limit of 16"),
        ({"prompt": [], "n": 1}, "must not be an empty list"),
        ({"prompt": "a", "n": 2, "best_of": 3}, "best_of=3 is not supported"),
        ({"prompt": "a", "max_tokens": 0}, "only with echo"),
        ({"prompt": "a", "logprobs": 6}, "less than or equal to 5"),
        ({"prompt": "a", "logprobs": -1}, "greater than or equal to 0"),
    ],
)
def test_completion_requests_outside_what_is_served_are_rejected(
    body: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        CompletionRequest.model_validate({"model": "m", **body})


def test_completion_choices_map_to_one_request_each_with_seed_plus_j() -> None:
    req = CompletionRequest.model_validate(
        {
            "model": "m",
            "prompt": ["a", "b"],
            "n": 3,
            "best_of": 3,
            "seed": 10,
            "temperature": 0.9,
            "logprobs": 2,
            "echo": True,
            "max_tokens": 0,
        }
    )
    gens = req.to_generate_requests()
    assert [(g.prompt, g.seed) for g in gens] == [
        ("a", 10),
        ("a", 11),
        ("a", 12),
        ("b", 10),
        ("b", 11),
        ("b", 12),
    ]
    assert all(g.logprobs == 2 and g.echo and g.max_new_tokens == 0 for g in gens)
    unseeded = CompletionRequest(model="m", prompt="a", n=2).to_generate_requests()
    assert [g.seed for g in unseeded] == [None, None] and unseeded[0].logprobs is None


def test_chat_logprobs_fields() -> None:
    base = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(ValidationError, match="requires logprobs"):
        ChatCompletionRequest.model_validate({**base, "top_logprobs": 2})
    with pytest.raises(ValidationError):
        ChatCompletionRequest.model_validate({**base, "logprobs": True, "top_logprobs": 21})
    with pytest.raises(ValidationError, match="less than or equal to 16"):
        ChatCompletionRequest.model_validate({**base, "n": 17})
    gens = ChatCompletionRequest.model_validate({**base, "logprobs": True, "n": 2}).to_generate_requests()
    assert [g.logprobs for g in gens] == [0, 0]
    chosen = ChatCompletionRequest.model_validate({**base, "logprobs": True, "top_logprobs": 4})
    assert chosen.to_generate_requests()[0].logprobs == 4
    assert ChatCompletionRequest.model_validate(base).to_generate_requests()[0].logprobs is None


# ---- response formats ----------------------------------------------------------------------------------


def _entry(token: str, logprob: float | None, top: list[tuple[str, float]] | None) -> TokenLogprob:
    alternatives = None
    if top is not None:
        alternatives = [
            TopLogprob(token_id=i, token=t, bytes=list(t.encode()), logprob=v) for i, (t, v) in enumerate(top)
        ]
    return TokenLogprob(
        token_id=0, token=token, bytes=list(token.encode()), logprob=logprob, top=alternatives
    )


def test_completion_and_chat_logprob_shapes() -> None:
    entries = [_entry("He", None, None), _entry("llo", -0.5, [("llo", -0.5), ("y", -1.5)])]
    assert completion_logprobs(entries, start_offset=3).model_dump() == {
        "tokens": ["He", "llo"],
        "token_logprobs": [None, -0.5],
        "top_logprobs": [None, {"llo": -0.5, "y": -1.5}],
        "text_offset": [3, 5],
    }
    chat = chat_logprobs(entries[1:]).model_dump()
    assert chat["content"] == [
        {
            "token": "llo",
            "logprob": -0.5,
            "bytes": [108, 108, 111],
            "top_logprobs": [
                {"token": "llo", "logprob": -0.5, "bytes": [108, 108, 111]},
                {"token": "y", "logprob": -1.5, "bytes": [121]},
            ],
        }
    ]
    # Two prompts x n=2: each prompt counted once, every completion counted.
    assert summed_usage([5, 5, 7, 7], [1, 2, 3, 4], 2) == (12, 10)


# ---- the engine on the tiny model ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def loaded(tiny_generate_model_dir: Path) -> LoadedModel:
    return load_model(ModelSpec(source=f"file://{tiny_generate_model_dir}", max_sequence_length=256))


@pytest.fixture(scope="module")
def generator(loaded: LoadedModel) -> Iterator[TextGenerator]:
    gen = TextGenerator(loaded, BatchingConfig(max_batch_size=4, batch_wait_timeout_s=0.02), "continuous")
    yield gen
    gen.close()


def _direct_logprobs(loaded: LoadedModel, ids: list[int]) -> torch.Tensor:
    """log_softmax of the raw logits of one teacher-forced pass: row ``k`` predicts token ``k + 1``."""
    with torch.inference_mode():
        logits = loaded.model(input_ids=torch.tensor([ids], device=loaded.device)).logits[0]
    logprobs: torch.Tensor = logits.float().log_softmax(dim=-1).cpu()
    return logprobs


def _prompt_ids(loaded: LoadedModel, prompt: str) -> list[int]:
    return list(loaded.tokenizer(prompt)["input_ids"])


def _check_against_direct(loaded: LoadedModel, prompt_ids: list[int], entries: list[TokenLogprob]) -> None:
    ids = prompt_ids + [e.token_id for e in entries]
    direct = _direct_logprobs(loaded, ids)
    for k, entry in enumerate(entries):
        row = direct[len(prompt_ids) + k - 1]
        assert entry.logprob == pytest.approx(float(row[entry.token_id]), abs=TOLERANCE)
        assert entry.top is not None
        expected = torch.topk(row, len(entry.top))
        assert [t.token_id for t in entry.top] == expected.indices.tolist()
        assert [t.logprob for t in entry.top] == pytest.approx(expected.values.tolist(), abs=TOLERANCE)


async def test_greedy_logprobs_match_a_direct_forward_pass_and_keep_the_text(
    generator: TextGenerator, loaded: LoadedModel
) -> None:
    prompt = "The quick brown fox"
    plain = await generator.generate(GenerateRequest(prompt=prompt, max_new_tokens=12))
    scored = await generator.generate(GenerateRequest(prompt=prompt, max_new_tokens=12, logprobs=3))
    assert plain.logprobs is None and plain.prompt_logprobs is None
    assert scored.text == plain.text and scored.completion_tokens == plain.completion_tokens
    assert scored.logprobs is not None and len(scored.logprobs) == scored.completion_tokens
    _check_against_direct(loaded, _prompt_ids(loaded, prompt), scored.logprobs)
    for entry in scored.logprobs:  # greedy: the chosen token is the most likely one
        assert entry.top is not None and len(entry.top) == 3
        assert entry.top[0].token_id == entry.token_id and entry.top[0].logprob == entry.logprob


async def test_sampled_logprobs_are_the_models_own_distribution_not_the_tempered_one(
    generator: TextGenerator, loaded: LoadedModel
) -> None:
    prompt = "hello"
    request = GenerateRequest(
        prompt=prompt, max_new_tokens=10, strategy="sample", temperature=1.8, top_k=5, seed=3, logprobs=1
    )
    result = await generator.generate(request)
    assert result.logprobs is not None and len(result.logprobs) == result.completion_tokens
    _check_against_direct(loaded, _prompt_ids(loaded, prompt), result.logprobs)
    again = await generator.generate(request)
    assert again.text == result.text  # the recorder must not disturb seeded sampling


async def test_echo_scores_the_prompt_like_the_score_path(
    generator: TextGenerator, loaded: LoadedModel
) -> None:
    prompt = "Once upon a time"
    ids = _prompt_ids(loaded, prompt)
    result = await generator.generate(GenerateRequest(prompt=prompt, max_new_tokens=0, echo=True, logprobs=2))
    assert (result.text, result.completion_tokens, result.finish_reason) == ("", 0, "length")
    assert result.logprobs == []
    echoed = result.prompt_logprobs
    assert echoed is not None and [e.token_id for e in echoed] == ids
    assert echoed[0].logprob is None and echoed[0].top is None
    direct = _direct_logprobs(loaded, ids)
    for k, entry in enumerate(echoed[1:], start=1):
        assert entry.logprob == pytest.approx(float(direct[k - 1, ids[k]]), abs=TOLERANCE)
        assert entry.top is not None and len(entry.top) == 2
    (log_likelihood,), (count,) = score_texts(loaded, [prompt])
    assert count == len(echoed) - 1
    assert sum(e.logprob for e in echoed[1:] if e.logprob is not None) == pytest.approx(
        log_likelihood, abs=1e-3
    )
    with pytest.raises(InvalidRequestError, match="at least 1"):
        await generator.generate(GenerateRequest(prompt=prompt, max_new_tokens=0))


async def test_streamed_logprobs_equal_the_unary_ones(generator: TextGenerator) -> None:
    request = GenerateRequest(prompt="abc", max_new_tokens=10, logprobs=2, echo=True)
    unary = await generator.generate(request)
    chunks = [chunk async for chunk in generator.stream(request)]
    assert chunks[0].prompt_logprobs == unary.prompt_logprobs
    streamed = [e for c in chunks for e in c.logprobs or []]
    assert unary.logprobs is not None
    assert [e.token_id for e in streamed] == [e.token_id for e in unary.logprobs]
    assert [e.logprob for e in streamed] == pytest.approx([e.logprob for e in unary.logprobs], abs=TOLERANCE)
    assert "".join(c.text for c in chunks) == unary.text
    assert chunks[-1].finish_reason == unary.finish_reason


async def test_many_requests_stream_interleaved_by_index(generator: TextGenerator) -> None:
    requests = [
        GenerateRequest(prompt="ab", max_new_tokens=6),
        GenerateRequest(prompt="The quick", max_new_tokens=9, logprobs=1),
        GenerateRequest(prompt="x", max_new_tokens=4, strategy="sample", seed=5),
    ]
    unary = await generator.generate_many(requests)
    texts = ["", "", ""]
    ends = []
    async for chunk in generator.stream_many(requests):
        texts[chunk.index] += chunk.text
        if chunk.finish_reason is not None:
            ends.append(chunk.index)
    assert sorted(ends) == [0, 1, 2]
    assert texts == [r.text for r in unary]
    with pytest.raises(InvalidRequestError, match="beam"):
        await generator.generate_many([*requests, GenerateRequest(prompt="a", strategy="beam", logprobs=1)])


def test_token_bytes_of_a_character_split_across_byte_tokens(loaded: LoadedModel) -> None:
    texts = TokenTexts(loaded.tokenizer)
    ids = _prompt_ids(loaded, "é")
    assert len(ids) == 2  # one byte-level token per UTF-8 byte
    pieces = [texts.lookup(i) for i in ids]
    assert [text for text, _ in pieces] == ["\ufffd", "\ufffd"]
    assert bytes(b for _, raw in pieces for b in raw) == "é".encode()
    assert texts.lookup(_prompt_ids(loaded, "a")[0]) == ("a", [97])
