"""Text generation on the tiny model through both batching backends, checked against plain model.generate."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from lmops_runtime.config import BatchingConfig, ModelSpec
from lmops_runtime.engine import continuous
from lmops_runtime.engine.continuous import ContinuousBatcher
from lmops_runtime.engine.generator import Backend, TextGenerator
from lmops_runtime.engine.params import SamplingParams
from lmops_runtime.loading import LoadedModel, load_model
from lmops_runtime.protocol import GenerateRequest, InvalidRequestError

PROMPTS = ["hello", "The quick brown fox", "x", "Once upon a time, in a land", "ab", "2 + 2 ="]


@pytest.fixture(scope="module")
def loaded(tiny_generate_model_dir: Path) -> LoadedModel:
    return load_model(ModelSpec(source=f"file://{tiny_generate_model_dir}", max_sequence_length=256))


@pytest.fixture(scope="module", params=["continuous", "static"])
def generator(request: pytest.FixtureRequest, loaded: LoadedModel) -> Iterator[TextGenerator]:
    backend: Backend = request.param
    gen = TextGenerator(loaded, BatchingConfig(max_batch_size=4, batch_wait_timeout_s=0.02), backend)
    yield gen
    gen.close()


def reference(
    loaded: LoadedModel, prompt: str, max_new_tokens: int, **kwargs: object
) -> tuple[list[int], str]:
    """Plain ``model.generate`` on one prompt: the tokens and text every backend must reproduce."""
    inputs = loaded.tokenizer(prompt, return_tensors="pt")
    with torch.inference_mode():
        output = loaded.model.generate(
            **inputs, max_new_tokens=max_new_tokens, pad_token_id=loaded.tokenizer.pad_token_id, **kwargs
        )
    tokens = output[0, inputs["input_ids"].shape[1] :].tolist()
    eos = loaded.tokenizer.eos_token_id
    if eos in tokens:
        tokens = tokens[: tokens.index(eos) + 1]
    return tokens, loaded.tokenizer.decode(tokens, skip_special_tokens=True)


async def test_greedy_equals_model_generate(generator: TextGenerator, loaded: LoadedModel) -> None:
    for prompt in PROMPTS[:3]:
        tokens, text = reference(loaded, prompt, 24, do_sample=False)
        result = await generator.generate(GenerateRequest(prompt=prompt, max_new_tokens=24))
        assert result.text == text
        assert result.completion_tokens == len(tokens)
        assert result.prompt_tokens == len(loaded.tokenizer(prompt)["input_ids"])
        assert result.finish_reason == ("length" if len(tokens) == 24 else "stop")


async def test_concurrent_requests_match_sequential_ones(generator: TextGenerator) -> None:
    requests = [GenerateRequest(prompt=p, max_new_tokens=8 + 4 * i) for i, p in enumerate(PROMPTS)]
    sequential = [await generator.generate(r) for r in requests]
    concurrent = await asyncio.gather(*(generator.generate(r) for r in requests * 2))
    assert [r.text for r in concurrent] == [r.text for r in sequential] * 2
    assert [r.completion_tokens for r in concurrent] == [r.completion_tokens for r in sequential] * 2


async def test_seeded_sampling_is_reproducible(generator: TextGenerator) -> None:
    def sample(seed: int) -> GenerateRequest:
        return GenerateRequest(
            prompt="hello", strategy="sample", temperature=1.5, max_new_tokens=32, seed=seed
        )

    first = await generator.generate(sample(7))
    # The same seed reproduces the text even while other requests share the model.
    noise = [GenerateRequest(prompt=p, strategy="sample", max_new_tokens=16) for p in PROMPTS]
    again, *_ = await asyncio.gather(generator.generate(sample(7)), *(generator.generate(r) for r in noise))
    other = await generator.generate(sample(8))
    assert again.text == first.text
    assert other.text != first.text


async def test_sampling_with_top_k_one_is_greedy(generator: TextGenerator) -> None:
    greedy = await generator.generate(GenerateRequest(prompt="hello", max_new_tokens=20))
    for seed in (None, 3):
        request = GenerateRequest(prompt="hello", strategy="sample", top_k=1, max_new_tokens=20, seed=seed)
        assert (await generator.generate(request)).text == greedy.text


async def test_unseeded_sampling_varies(generator: TextGenerator) -> None:
    request = GenerateRequest(prompt="hello", strategy="sample", temperature=2.0, max_new_tokens=32)
    texts = {(await generator.generate(request)).text for _ in range(3)}
    assert len(texts) > 1


async def test_beam_search_equals_model_generate(generator: TextGenerator, loaded: LoadedModel) -> None:
    tokens, text = reference(loaded, "hello", 16, num_beams=3, do_sample=False, early_stopping=True)
    result = await generator.generate(
        GenerateRequest(prompt="hello", strategy="beam", num_beams=3, max_new_tokens=16)
    )
    assert result.text == text
    assert result.completion_tokens == len(tokens)
    chunks = [
        c
        async for c in generator.stream(
            GenerateRequest(prompt="hello", strategy="beam", num_beams=3, max_new_tokens=16)
        )
    ]
    assert "".join(c.text for c in chunks) == text


def _stop_for(text: str) -> str:
    """A character from the middle of ``text`` that decodes cleanly, to use as a stop sequence."""
    for index in range(len(text) // 3, len(text)):
        if text[index] != "\ufffd" and text[index] not in text[:index]:
            return text[index]
    pytest.fail(f"no usable stop character in {text!r}")


async def test_stop_sequences_cut_the_text(generator: TextGenerator) -> None:
    full = await generator.generate(GenerateRequest(prompt="The quick brown fox", max_new_tokens=40))
    stop = _stop_for(full.text)
    cut = await generator.generate(
        GenerateRequest(prompt="The quick brown fox", max_new_tokens=40, stop=[stop, "never-appears"])
    )
    assert cut.text == full.text[: full.text.index(stop)]
    assert cut.finish_reason == "stop"
    assert cut.completion_tokens < full.completion_tokens
    chunks = [
        c
        async for c in generator.stream(
            GenerateRequest(prompt="The quick brown fox", max_new_tokens=40, stop=[stop])
        )
    ]
    assert "".join(c.text for c in chunks) == cut.text
    assert chunks[-1].finish_reason == "stop"


@pytest.mark.parametrize("strategy", ["greedy", "sample"])
async def test_stream_concatenation_equals_generate(generator: TextGenerator, strategy: str) -> None:
    request = GenerateRequest(prompt="Once upon a time", strategy=strategy, max_new_tokens=40, seed=11)  # type: ignore[arg-type]
    result = await generator.generate(request)
    chunks = [chunk async for chunk in generator.stream(request)]
    assert "".join(chunk.text for chunk in chunks) == result.text
    assert all(chunk.finish_reason is None for chunk in chunks[:-1])
    last = chunks[-1]
    assert (last.finish_reason, last.prompt_tokens, last.completion_tokens) == (
        result.finish_reason,
        result.prompt_tokens,
        result.completion_tokens,
    )
    if generator.backend == "continuous" or strategy == "sample":
        assert len(chunks) > 5  # really token by token, not one piece at the end


async def test_chat_messages_generate(generator: TextGenerator) -> None:
    result = await generator.generate(
        GenerateRequest(messages=[{"role": "user", "content": "hi"}], max_new_tokens=5)  # type: ignore[list-item]
    )
    assert result.prompt_tokens == len("<|user|>\nhi") + 1 + len("\n<|assistant|>\n")
    assert result.completion_tokens <= 5


async def test_invalid_requests_raise_before_generating(generator: TextGenerator) -> None:
    with pytest.raises(InvalidRequestError, match="maximum sequence length of 256"):
        await generator.generate(GenerateRequest(prompt="x" * 200, max_new_tokens=100))
    with pytest.raises(InvalidRequestError):
        await generator.generate(GenerateRequest(prompt="x", strategy="greedy", num_beams=4))
    chunks = generator.stream(GenerateRequest(prompt="x" * 300, max_new_tokens=1))
    with pytest.raises(InvalidRequestError):
        await chunks.__anext__()


async def test_token_id_prompts_generate_as_their_text_does(
    generator: TextGenerator, loaded: LoadedModel
) -> None:
    ids = loaded.tokenizer("hello")["input_ids"]
    by_text, by_ids = await asyncio.gather(
        generator.generate(GenerateRequest(prompt="hello", max_new_tokens=8, echo=True)),
        generator.generate(GenerateRequest(prompt=ids, max_new_tokens=8, echo=True)),
    )
    assert by_ids.text == by_text.text and by_ids.prompt_tokens == len(ids)
    assert by_text.prompt_text == "hello"
    assert by_ids.prompt_text == loaded.tokenizer.decode(ids)
    vocab = loaded.model.config.vocab_size
    with pytest.raises(InvalidRequestError, match=f"token {vocab}, outside this model's vocabulary"):
        await generator.generate(GenerateRequest(prompt=[*ids, vocab], max_new_tokens=2))


def penalized_greedy(
    loaded: LoadedModel, prompt: str, max_new_tokens: int, frequency: float, presence: float
) -> str:
    """Greedy decoding with OpenAI's penalties, one full forward pass per token: the reference to match."""
    ids = loaded.tokenizer(prompt)["input_ids"]
    generated: list[int] = []
    with torch.inference_mode():
        for _ in range(max_new_tokens):
            logits = loaded.model(torch.tensor([ids + generated])).logits[0, -1].float()
            counts = torch.bincount(torch.tensor(generated, dtype=torch.long), minlength=logits.numel())
            logits -= frequency * counts + presence * (counts > 0).float()
            generated.append(int(logits.argmax()))
            if generated[-1] == loaded.tokenizer.eos_token_id:
                break
    return str(loaded.tokenizer.decode(generated, skip_special_tokens=True))


async def test_penalties_and_logit_bias_steer_decoding(generator: TextGenerator, loaded: LoadedModel) -> None:
    plain = GenerateRequest(prompt="hello", max_new_tokens=16)
    penalized = GenerateRequest(
        prompt="hello", max_new_tokens=16, frequency_penalty=1.5, presence_penalty=0.5
    )
    (z,) = loaded.tokenizer("z", add_special_tokens=False)["input_ids"]
    forced = GenerateRequest(prompt="hello", max_new_tokens=8, strategy="sample", logit_bias={z: 100})
    # Together, so the static backend puts rows with and without adjustments into one batch.
    greedy, steered, zs = await asyncio.gather(
        generator.generate(plain), generator.generate(penalized), generator.generate(forced)
    )
    assert steered.text == penalized_greedy(loaded, "hello", 16, frequency=1.5, presence=0.5)
    assert steered.text != greedy.text
    assert zs.text == "z" * 8
    tokens, text = reference(loaded, "hello", 4, do_sample=False)
    banned = GenerateRequest(prompt="hello", max_new_tokens=4, logit_bias={tokens[0]: -100})
    assert (await generator.generate(banned)).text != text


@pytest.mark.parametrize(
    "fields",
    [{"temperature": float("nan")}, {"temperature": float("inf")}, {"seed": 2**64}, {"seed": -(2**63) - 1}],
    ids=["temperature-nan", "temperature-inf", "seed-too-big", "seed-too-small"],
)
async def test_sampling_values_no_kernel_takes_are_rejected(
    generator: TextGenerator, fields: dict[str, float]
) -> None:
    with pytest.raises(InvalidRequestError, match=r"^(temperature|seed) must"):
        await generator.generate(GenerateRequest(prompt="x", strategy="sample", max_new_tokens=2, **fields))
    generator.check()


async def test_extreme_but_valid_sampling_values_are_served(generator: TextGenerator) -> None:
    """A top-k past the vocabulary filters nothing (it once overflowed the batcher's int32 tensor)."""
    greedy = await generator.generate(GenerateRequest(prompt="hello", max_new_tokens=6))
    extremes: list[dict[str, float]] = [
        {"top_k": 2**63, "temperature": 1e-30},
        {"top_k": 2**31, "top_p": 1e-30},
        {"temperature": 1e308, "seed": -(2**63)},
    ]
    results = await asyncio.gather(
        *(
            generator.generate(GenerateRequest(prompt="hello", strategy="sample", max_new_tokens=6, **fields))
            for fields in extremes
        )
    )
    # A near-zero temperature or top-p keeps only the likeliest token: greedy decoding.
    assert [r.text for r in results[:2]] == [greedy.text] * 2
    assert results[2].completion_tokens == 6
    generator.check()


async def test_a_failed_batching_step_fails_its_requests_and_the_next_request_restarts_the_thread(
    loaded: LoadedModel,
) -> None:
    """A NaN temperature (which validation stops before it gets here) raises inside the manager's thread."""
    gen = TextGenerator(loaded, BatchingConfig(max_batch_size=4), "continuous")
    batcher = gen._continuous
    assert batcher is not None
    greedy = SamplingParams("greedy", 8)

    async def tokens(params: SamplingParams) -> list[int]:
        last: list[int] = []
        async for update in batcher.run([5, 6, 7], params):
            last = update.tokens
        return last

    try:
        before = await tokens(greedy)
        poison = asyncio.ensure_future(tokens(SamplingParams("sample", 8, temperature=float("nan"))))
        with pytest.raises(RuntimeError, match="generation failed: probability tensor"):
            await asyncio.wait_for(poison, 60)
        await asyncio.wait_for(asyncio.to_thread(_wait_until_stopped, batcher), 30)
        assert not batcher.running
        after = await asyncio.wait_for(asyncio.gather(*(tokens(greedy) for _ in range(3))), 60)
        assert after == [before] * 3
        assert batcher.running
        gen.check()
    finally:
        gen.close()
    with pytest.raises(RuntimeError, match="closed"):
        gen.check()


async def test_a_request_whose_batching_thread_is_gone_fails_instead_of_waiting(
    loaded: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The thread can end without failing a request (one added as it died): the request must not hang."""
    monkeypatch.setattr(continuous, "LIVENESS_POLL_S", 0.01)
    gen = TextGenerator(loaded, BatchingConfig(max_batch_size=4), "continuous")
    batcher = gen._continuous
    assert batcher is not None
    try:
        updates = batcher.run([5, 6, 7], SamplingParams("greedy", 240))
        await updates.__anext__()
        with monkeypatch.context() as patched:
            patched.setattr(batcher._manager, "is_running", lambda: False)
            with pytest.raises(RuntimeError, match="stopped during this request"):
                async for _ in updates:
                    pass
    finally:
        gen.close()


def _wait_until_stopped(batcher: ContinuousBatcher) -> None:
    deadline = time.monotonic() + 30
    while batcher.running and time.monotonic() < deadline:
        time.sleep(0.05)


async def test_int8_model_generates_through_the_batcher(tiny_generate_model_dir: Path) -> None:
    quantized = load_model(ModelSpec(source=f"file://{tiny_generate_model_dir}", quantization="int8"))
    gen = TextGenerator(quantized, BatchingConfig(), "continuous")
    try:
        tokens, text = reference(quantized, "hello", 12, do_sample=False)
        result = await gen.generate(GenerateRequest(prompt="hello", max_new_tokens=12))
        assert result.completion_tokens == len(tokens)
        assert result.text == text
    finally:
        gen.close()


@pytest.mark.slow
def test_batching_thread_never_keeps_a_process_alive(tiny_generate_model_dir: Path) -> None:
    """A process that exits without closing the generator (a crash, a failed test) must still exit."""
    script = (
        "import sys\n"
        "from lmops_runtime.config import BatchingConfig, ModelSpec\n"
        "from lmops_runtime.engine.generator import TextGenerator\n"
        "from lmops_runtime.loading import load_model\n"
        f"loaded = load_model(ModelSpec(source='file://{tiny_generate_model_dir}'))\n"
        "TextGenerator(loaded, BatchingConfig(), 'continuous')\n"
        "raise SystemExit('crashing without close()')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert "crashing without close()" in done.stderr
