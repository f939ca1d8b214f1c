"""Incremental decoding, stop matching, parameter resolution and prompts: the engine's pure parts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from lmops_runtime.config import GenerationDefaults
from lmops_runtime.engine.params import resolve_params
from lmops_runtime.engine.prompt import prompt_token_ids
from lmops_runtime.engine.sampling import PerRowLogitAdjuster
from lmops_runtime.engine.text import IncrementalDecoder, StopMatcher, cut_at_stop
from lmops_runtime.protocol import ChatMessage, GenerateRequest, InvalidRequestError


@pytest.fixture(scope="module")
def tokenizer(tiny_generate_model_dir: Path) -> object:
    return AutoTokenizer.from_pretrained(tiny_generate_model_dir)


def test_incremental_decode_of_multibyte_text_one_token_at_a_time(tokenizer: object) -> None:
    text = "héllo wörld ✓ 日本語 🙂!"
    ids = tokenizer(text)["input_ids"]  # type: ignore[operator]
    assert len(ids) > len(text)  # byte-level: multi-byte characters span several tokens
    decoder = IncrementalDecoder(tokenizer)
    deltas = [decoder.add([token]) for token in ids]
    deltas.append(decoder.flush())
    assert "".join(deltas) == text
    assert all("\ufffd" not in delta for delta in deltas)
    assert sum(1 for delta in deltas if delta) == len(text)


def test_incomplete_character_at_the_end_is_flushed(tokenizer: object) -> None:
    ids = tokenizer("a✓")["input_ids"]  # type: ignore[operator]
    decoder = IncrementalDecoder(tokenizer)
    assert decoder.add(ids[:1]) == "a"
    assert decoder.add(ids[1:-1]) == ""
    assert decoder.flush() == "\ufffd"


def test_bytes_that_can_never_form_a_character_stream_after_a_short_hold(tokenizer: object) -> None:
    # A random model's greedy loop often repeats one continuation byte (0xA7, "§" in the byte alphabet):
    # no window of it ever decodes cleanly, yet the client must see it long before the end.
    stray = tokenizer.convert_tokens_to_ids("\u00a7")  # type: ignore[attr-defined]
    decoder = IncrementalDecoder(tokenizer)
    deltas = [decoder.add([stray]) for _ in range(10)]
    assert deltas[:3] == ["", "", ""]
    assert deltas[3:] == ["\ufffd"] * 7
    assert decoder.flush() == "\ufffd" * 3


def test_a_character_started_within_the_hold_is_not_broken(tokenizer: object) -> None:
    ids = tokenizer("🙂")["input_ids"]  # type: ignore[operator]
    stray = tokenizer.convert_tokens_to_ids("\u00a7")  # type: ignore[attr-defined]
    decoder = IncrementalDecoder(tokenizer)
    deltas = [decoder.add([token]) for token in [stray, stray, stray, *ids]]
    assert "".join(deltas) + decoder.flush() == "\ufffd" * 3 + "🙂"
    assert deltas[-1].endswith("🙂")


def test_stop_matcher_holds_back_possible_prefixes() -> None:
    matcher = StopMatcher(["END", "\n\n"])
    emitted = [matcher.feed(piece) for piece in ["abc E", "N", "x E", "ND tail"]]
    assert emitted == ["abc ", "", "ENx ", ""]
    assert matcher.stopped
    assert matcher.feed("more") == "" and matcher.flush() == ""
    free = StopMatcher(["zz"])
    assert free.feed("abz") == "ab"
    assert free.flush() == "z"
    assert cut_at_stop("one two three", ["three", "two"]) == ("one ", True)
    assert cut_at_stop("one", ["x"]) == ("one", False)


DEFAULTS = GenerationDefaults(strategy="greedy", max_new_tokens=16, temperature=0.7, top_k=40)
VOCAB = 300


def test_params_merge_request_over_defaults() -> None:
    params = resolve_params(GenerateRequest(prompt="x", strategy="sample", top_p=0.9), DEFAULTS, 4, 64, VOCAB)
    assert (params.strategy, params.temperature, params.top_k, params.top_p) == ("sample", 0.7, 40, 0.9)
    assert params.max_new_tokens == 16
    beam = resolve_params(GenerateRequest(prompt="x", strategy="beam"), DEFAULTS, 4, 64, VOCAB)
    assert beam.num_beams == DEFAULTS.num_beams


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (GenerateRequest(prompt="x", max_new_tokens=61), "maximum sequence length of 64"),
        (GenerateRequest(prompt="x", max_new_tokens=0), "at least 1"),
        (GenerateRequest(prompt="x", num_beams=2), "only applies to strategy beam"),
        (GenerateRequest(prompt="x", strategy="beam", num_beams=99), "between 1 and"),
        (GenerateRequest(prompt="x", strategy="sample", temperature=0), "greater than 0"),
        (GenerateRequest(prompt="x", strategy="sample", top_p=1.5), "top_p"),
        (GenerateRequest(prompt="x", strategy="sample", top_k=0), "top_k"),
        (GenerateRequest(prompt="x", stop=[""]), "must not be empty"),
        (GenerateRequest(prompt="x", presence_penalty=2.5), "presence_penalty must be between -2.0 and 2.0"),
        (GenerateRequest(prompt="x", frequency_penalty=float("nan")), "frequency_penalty must be between"),
        (GenerateRequest(prompt="x", logit_bias={VOCAB: 1.0}), "token 300, outside this model's vocabulary"),
        (GenerateRequest(prompt="x", logit_bias={-1: 1.0}), "token -1, outside"),
        (GenerateRequest(prompt="x", logit_bias={5: 101.0}), "between -100.0 and 100.0"),
        (GenerateRequest(prompt="x", logit_bias=dict.fromkeys(range(301), 1.0)), "at most 300 tokens"),
        (GenerateRequest(prompt="x", strategy="beam", frequency_penalty=1), "not available with beam search"),
    ],
)
def test_bad_parameters_are_rejected(request_: GenerateRequest, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        resolve_params(request_, DEFAULTS, 4, 64, VOCAB)


def test_chat_uses_the_tokenizer_template_or_a_default(tokenizer: object) -> None:
    messages = [ChatMessage(role="system", content="be brief"), ChatMessage(role="user", content="hi")]
    ids = prompt_token_ids(tokenizer, GenerateRequest(messages=messages), VOCAB)
    text = tokenizer.decode(ids)  # type: ignore[attr-defined]
    assert text == "<|system|>\nbe brief</s>\n<|user|>\nhi</s>\n<|assistant|>\n"
    plain = AutoTokenizer.from_pretrained(tokenizer.name_or_path)  # type: ignore[attr-defined]
    plain.chat_template = None
    default_ids = prompt_token_ids(plain, GenerateRequest(messages=messages), VOCAB)
    assert plain.decode(default_ids) == "system: be brief\nuser: hi\nassistant:"
    with pytest.raises(InvalidRequestError, match="exactly one"):
        prompt_token_ids(tokenizer, GenerateRequest(prompt="x", messages=messages), VOCAB)
    with pytest.raises(InvalidRequestError, match="exactly one"):
        prompt_token_ids(tokenizer, GenerateRequest(), VOCAB)


def test_filter_logits_top_k_and_top_p() -> None:
    import torch

    from lmops_runtime.engine.sampling import filter_logits

    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log()
    kept = lambda out: torch.isfinite(out).nonzero().flatten().tolist()  # noqa: E731
    assert kept(filter_logits(logits, top_k=2, top_p=None)) == [0, 1]
    assert kept(filter_logits(logits, top_k=None, top_p=0.5)) == [0]
    assert kept(filter_logits(logits, top_k=None, top_p=0.7)) == [0, 1]
    assert kept(filter_logits(logits, top_k=None, top_p=1.0)) == [0, 1, 2, 3]
    assert kept(filter_logits(logits, top_k=3, top_p=0.9)) == [0, 1, 2]


async def test_micro_batcher_groups_concurrent_calls() -> None:
    import asyncio

    from lmops_runtime.config import BatchingConfig
    from lmops_runtime.engine.batching import MicroBatcher

    batches: list[list[int]] = []

    async def double(items: list[int]) -> list[int]:
        batches.append(items)
        await asyncio.sleep(0.01)
        return [2 * item for item in items]

    batcher: MicroBatcher[int, int] = MicroBatcher(
        double, BatchingConfig(max_batch_size=3, batch_wait_timeout_s=0.05)
    )
    results = await asyncio.gather(*(batcher.submit(i) for i in range(7)))
    assert results == [2 * i for i in range(7)]
    assert [len(b) for b in batches] == [3, 3, 1]

    async def fail(items: list[int]) -> list[int]:
        raise ValueError("boom")

    failing: MicroBatcher[int, int] = MicroBatcher(fail, BatchingConfig())
    with pytest.raises(ValueError, match="boom"):
        await failing.submit(1)
    batcher.close()
    failing.close()


def test_zero_penalties_and_biases_leave_the_logits_alone() -> None:
    request = GenerateRequest(prompt="x", presence_penalty=0, frequency_penalty=0.0, logit_bias={3: 0.0})
    assert not resolve_params(request, DEFAULTS, 4, 64, VOCAB).adjusts_logits
    beam = GenerateRequest(prompt="x", strategy="beam", presence_penalty=0, logit_bias={3: 0.0})
    assert resolve_params(beam, DEFAULTS, 4, 64, VOCAB).strategy == "beam"


def test_logit_adjuster_penalizes_generated_tokens_and_adds_the_bias() -> None:
    """OpenAI's formula on the tokens after the prompt: -frequency * count - presence * (count > 0) + bias."""
    adjusted = GenerateRequest(prompt="x", frequency_penalty=0.5, presence_penalty=1.0, logit_bias={7: 2.0})
    rows = [
        resolve_params(adjusted, DEFAULTS, 2, 64, VOCAB),
        resolve_params(GenerateRequest(prompt="x"), DEFAULTS, 2, 64, VOCAB),
    ]
    input_ids = torch.tensor([[1, 1, 3, 3, 5], [1, 1, 3, 3, 5]])  # a 2-token prompt, then 3 generated
    scores = torch.zeros(2, 8)
    out = PerRowLogitAdjuster(rows, prompt_width=2)(input_ids, scores)  # type: ignore[arg-type]
    assert out[0].tolist() == [0.0, 0.0, 0.0, -2.0, 0.0, -1.5, 0.0, 2.0]
    assert out[1].tolist() == [0.0] * 8
    assert scores.abs().sum() == 0  # the input is not modified
