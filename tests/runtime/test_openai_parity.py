"""OpenAI parity through the Router on a real local Ray: logprobs, echo, n, prompt lists, streamed choices,
penalties and logit_bias.

One generate revision behind one Router for the whole module; the real ``openai`` client where it models the
field, raw HTTP where the check is on the wire format.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from transformers import AutoTokenizer

from lmops_runtime.config import RouterConfig
from tests.runtime import serve_configs as sc
from tests.runtime.router_support import deployed, redeploy

pytestmark = pytest.mark.slow

MODEL = "tiny"
TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def base_url(ray_local: None, tiny_generate_model_dir: Path) -> Iterator[str]:
    config = RouterConfig(weights={"p1": 100}, stable="p1")
    document = sc.document(
        sc.router_app(config, model_name=MODEL),
        sc.server_app("p1", tiny_generate_model_dir, model_name=MODEL),
    )
    with deployed(document) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=120)


def _post(base_url: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{base_url}{path}", json={"model": MODEL, **body}, timeout=120)


def _events(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    lines = [line.removeprefix("data: ") for line in response.text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def test_echo_with_logprobs_scores_the_prompt_and_the_completion(
    client: openai.OpenAI, base_url: str
) -> None:
    prompt = "Hello world"
    out = client.completions.create(
        model=MODEL, prompt=prompt, max_tokens=5, temperature=0, echo=True, logprobs=2
    )
    choice = out.choices[0]
    assert out.usage is not None and choice.logprobs is not None
    plain = client.completions.create(model=MODEL, prompt=prompt, max_tokens=5, temperature=0)
    assert choice.text == prompt + plain.choices[0].text
    lp = choice.logprobs
    tokens, token_lps, tops = lp.tokens or [], lp.token_logprobs or [], lp.top_logprobs or []
    n_prompt = out.usage.prompt_tokens
    assert len(tokens) == len(token_lps) == len(tops) == n_prompt + out.usage.completion_tokens
    assert token_lps[0] is None and tops[0] is None
    assert "".join(tokens[:n_prompt]) == prompt
    offsets = lp.text_offset or []
    assert offsets[0] == 0 and offsets == sorted(offsets) and offsets[n_prompt] == len(prompt)
    # The echoed prompt is scored exactly like POST /v1/score scores it.
    scored = httpx.post(f"{base_url}/v1/score", json={"input": prompt}, timeout=120).json()["data"][0]
    prompt_lps = [v for v in token_lps[1:n_prompt] if v is not None]
    assert len(prompt_lps) == scored["tokens"]
    assert sum(prompt_lps) == pytest.approx(scored["log_likelihood"], abs=TOLERANCE)
    for k in range(1, len(tokens)):
        top = tops[k]
        assert top is not None and 1 <= len(top) <= 2
        if k >= n_prompt:  # greedy picks the likeliest token: it heads its own alternatives
            assert top[tokens[k]] == pytest.approx(token_lps[k]) and token_lps[k] == max(top.values())


def test_echo_with_max_tokens_zero_only_scores(base_url: str) -> None:
    body = {"prompt": "abc", "max_tokens": 0, "echo": True, "logprobs": 0}
    out = _post(base_url, "/v1/completions", body).json()
    choice = out["choices"][0]
    assert choice["text"] == "abc" and choice["finish_reason"] == "length"
    assert out["usage"]["completion_tokens"] == 0
    assert choice["logprobs"]["tokens"] == ["a", "b", "c"]
    assert choice["logprobs"]["top_logprobs"] == [None, {}, {}]
    rejected = _post(base_url, "/v1/completions", {"prompt": "abc", "max_tokens": 0})
    assert rejected.status_code == 400 and "echo" in rejected.json()["error"]["message"]


def test_n_with_seed_gives_reproducible_distinct_choices(client: openai.OpenAI) -> None:
    def ask() -> list[str]:
        out = client.completions.create(
            model=MODEL, prompt="Once", max_tokens=8, temperature=1.5, n=3, seed=42
        )
        assert [c.index for c in out.choices] == [0, 1, 2]
        return [c.text for c in out.choices]

    first = ask()
    assert ask() == first
    assert len(set(first)) > 1
    greedy = client.completions.create(model=MODEL, prompt="Once", max_tokens=6, temperature=0, n=2)
    assert greedy.choices[0].text == greedy.choices[1].text


def test_prompt_list_times_n(client: openai.OpenAI, base_url: str) -> None:
    prompts = ["abc", "The quick brown"]
    out = client.completions.create(model=MODEL, prompt=prompts, max_tokens=4, temperature=0, n=2)
    assert [c.index for c in out.choices] == [0, 1, 2, 3]
    singles = [client.completions.create(model=MODEL, prompt=p, max_tokens=4, temperature=0) for p in prompts]
    assert [c.text for c in out.choices] == [s.choices[0].text for s in singles for _ in range(2)]
    assert out.usage is not None
    assert out.usage.prompt_tokens == sum(s.usage.prompt_tokens for s in singles if s.usage)
    assert out.usage.completion_tokens == 2 * sum(s.usage.completion_tokens for s in singles if s.usage)
    too_many = _post(base_url, "/v1/completions", {"prompt": ["x"] * 9, "n": 2})
    assert too_many.status_code == 400
    assert "limit of 16" in too_many.json()["error"]["message"]
    best_of = _post(base_url, "/v1/completions", {"prompt": "x", "n": 1, "best_of": 2})
    assert best_of.status_code == 400 and "best_of" in best_of.json()["error"]["message"]


def test_streaming_n_two_matches_unary_per_index(client: openai.OpenAI, base_url: str) -> None:
    body = {"prompt": "Hi there", "max_tokens": 6, "temperature": 0, "n": 2}
    unary = _post(base_url, "/v1/completions", body).json()
    events = _events(
        _post(
            base_url, "/v1/completions", {**body, "stream": True, "stream_options": {"include_usage": True}}
        )
    )
    texts: dict[int, str] = {}
    for event in events[:-1]:
        (choice,) = event["choices"]
        texts[choice["index"]] = texts.get(choice["index"], "") + choice["text"]
    assert texts == {c["index"]: c["text"] for c in unary["choices"]}
    assert events[-1]["choices"] == [] and events[-1]["usage"] == unary["usage"]
    assert sum(1 for e in events if e.get("usage")) == 1


def test_streaming_logprobs_and_echo(base_url: str) -> None:
    body = {"prompt": "abc", "max_tokens": 5, "temperature": 0, "logprobs": 1, "echo": True}
    unary = _post(base_url, "/v1/completions", body).json()["choices"][0]
    events = _events(_post(base_url, "/v1/completions", {**body, "stream": True}))
    text = "".join(e["choices"][0]["text"] for e in events)
    tokens = [t for e in events for t in e["choices"][0]["logprobs"]["tokens"]]
    offsets = [o for e in events for o in e["choices"][0]["logprobs"]["text_offset"]]
    token_lps = [v for e in events for v in e["choices"][0]["logprobs"]["token_logprobs"]]
    assert text == unary["text"] and text.startswith("abc")
    assert tokens == unary["logprobs"]["tokens"] and offsets == unary["logprobs"]["text_offset"]
    assert token_lps[0] is None
    assert token_lps[1:] == pytest.approx(unary["logprobs"]["token_logprobs"][1:], abs=TOLERANCE)


def test_chat_logprobs_and_n(client: openai.OpenAI, base_url: str) -> None:
    messages: Any = [{"role": "user", "content": "hi"}]
    out = client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=4, temperature=0, logprobs=True, top_logprobs=2, n=2
    )
    assert [c.index for c in out.choices] == [0, 1] and out.usage is not None
    for choice in out.choices:
        assert choice.logprobs is not None and choice.logprobs.content is not None
        content = choice.logprobs.content
        assert len(content) * 2 == out.usage.completion_tokens
        for entry in content:
            assert entry.bytes and len(entry.top_logprobs) == 2
            assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob)  # greedy
    plain = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=4, temperature=0)
    assert plain.choices[0].logprobs is None
    assert plain.choices[0].message.content == out.choices[0].message.content
    events = _events(
        _post(
            base_url,
            "/v1/chat/completions",
            {
                "messages": messages,
                "max_tokens": 4,
                "temperature": 0,
                "n": 2,
                "logprobs": True,
                "stream": True,
            },
        )
    )
    streamed: dict[int, list[str]] = {0: [], 1: []}
    roles = []
    for event in events:
        (choice,) = event["choices"]
        streamed[choice["index"]] += [e["token"] for e in choice["logprobs"]["content"]]
        if "role" in choice["delta"]:
            roles.append(choice["index"])
    assert sorted(roles) == [0, 1]
    expected = [e.token for e in out.choices[0].logprobs.content or []] if out.choices[0].logprobs else []
    assert streamed == {0: expected, 1: expected}


def _text_chunks(base_url: str) -> tuple[str, int, int]:
    """(streamed text, chunks that carried text, completion tokens) of one greedy 48-token stream."""
    body = {
        "prompt": "Hello",
        "max_tokens": 48,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    events = _events(_post(base_url, "/v1/completions", body))
    texts = [c["text"] for e in events for c in e["choices"] if c.get("text")]
    return "".join(texts), len(texts), events[-1]["usage"]["completion_tokens"]


def test_stream_interval_merges_tokens_into_fewer_chunks_with_the_same_text(
    base_url: str, tiny_generate_model_dir: Path
) -> None:
    def reconfigure(interval_ms: int) -> None:
        config = RouterConfig(weights={"p1": 100}, stable="p1", stream_interval_ms=interval_ms)
        redeploy(
            sc.document(
                sc.router_app(config, model_name=MODEL),
                sc.server_app("p1", tiny_generate_model_dir, model_name=MODEL),
            )
        )

    try:
        reconfigure(0)
        each_text, each_chunks, tokens = _text_chunks(base_url)
        reconfigure(1000)
        merged_text, merged_chunks, merged_tokens = _text_chunks(base_url)
    finally:
        reconfigure(RouterConfig.model_fields["stream_interval_ms"].default)
    assert merged_text == each_text and merged_tokens == tokens
    # Token by token, every token (but the few a multi-byte character holds back) is its own chunk; with a
    # one-second window the first token goes alone and the rest of a sub-second stream leaves in one or two.
    assert each_chunks >= tokens // 2 > 3
    assert merged_chunks <= 3


def test_penalties_logit_bias_and_user_through_the_openai_client(
    client: openai.OpenAI, base_url: str, tiny_generate_model_dir: Path
) -> None:
    """Chat front ends send zero penalties, an empty logit_bias and ``user`` on every call: all are served."""
    messages: Any = [{"role": "user", "content": "hi"}]
    plain = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=6, temperature=0)
    neutral = client.chat.completions.create(
        model=MODEL,
        messages=messages,
        max_tokens=6,
        temperature=0,
        frequency_penalty=0,
        presence_penalty=0,
        logit_bias={},
        user="alice",
        response_format={"type": "text"},
    )
    assert neutral.choices[0].message.content == plain.choices[0].message.content
    tokenizer = AutoTokenizer.from_pretrained(tiny_generate_model_dir)
    (z,) = tokenizer("z", add_special_tokens=False)["input_ids"]
    forced = client.completions.create(
        model=MODEL, prompt="hello", max_tokens=5, logit_bias={str(z): 100}, user="bob"
    )
    assert forced.choices[0].text == "zzzzz"
    # Greedy decoding of the tiny model repeats one token after "Hello": the penalty must break the loop.
    penalized = client.completions.create(
        model=MODEL, prompt="Hello", max_tokens=12, temperature=0, frequency_penalty=2
    )
    unpenalized = client.completions.create(model=MODEL, prompt="Hello", max_tokens=12, temperature=0)
    assert penalized.choices[0].text != unpenalized.choices[0].text
    json_mode = {"messages": messages, "response_format": {"type": "json_object"}}
    response = _post(base_url, "/v1/chat/completions", json_mode)
    assert response.status_code == 400 and "response_format" in response.json()["error"]["message"]
    for body, message in [
        ({"prompt": "x", "presence_penalty": 2.5}, "presence_penalty"),
        ({"prompt": "x", "logit_bias": {"99999999": 1}}, "outside this model's vocabulary"),
        ({"prompt": "x", "logit_bias": {"not-a-token": 1}}, "logit_bias"),
    ]:
        response = _post(base_url, "/v1/completions", body)
        assert response.status_code == 400, response.text
        assert message in response.json()["error"]["message"]


def test_token_id_prompts_as_lm_eval_harness_sends_them(
    client: openai.OpenAI, base_url: str, tiny_generate_model_dir: Path
) -> None:
    """lm-eval's local-completions sends token ids by default (tokenized_requests=True)."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_generate_model_dir)
    hello, abc = tokenizer("hello")["input_ids"], tokenizer("abc")["input_ids"]
    by_text = client.completions.create(model=MODEL, prompt=["hello", "abc"], max_tokens=6, temperature=0)
    by_ids = client.completions.create(model=MODEL, prompt=[hello, abc], max_tokens=6, temperature=0)
    assert [c.text for c in by_ids.choices] == [c.text for c in by_text.choices]
    single = client.completions.create(model=MODEL, prompt=hello, max_tokens=6, temperature=0)
    assert single.choices[0].text == by_text.choices[0].text
    # Log-likelihood of a continuation: echo, max_tokens 0, logprobs; the same scores as the text prompt.
    scored_text = _post(
        base_url, "/v1/completions", {"prompt": "abc", "max_tokens": 0, "echo": True, "logprobs": 1}
    )
    scored_ids = _post(
        base_url, "/v1/completions", {"prompt": abc, "max_tokens": 0, "echo": True, "logprobs": 1}
    )
    text_choice, ids_choice = scored_text.json()["choices"][0], scored_ids.json()["choices"][0]
    assert ids_choice["logprobs"]["token_logprobs"] == text_choice["logprobs"]["token_logprobs"]
    assert ids_choice["text"] == tokenizer.decode(abc)
    stream_body = {"prompt": abc, "max_tokens": 3, "temperature": 0, "echo": True, "stream": True}
    events = _events(_post(base_url, "/v1/completions", stream_body))
    streamed = "".join(c["text"] for e in events for c in e["choices"])
    unary = client.completions.create(model=MODEL, prompt=abc, max_tokens=3, temperature=0, echo=True)
    assert streamed == unary.choices[0].text
    assert streamed.startswith(tokenizer.decode(abc))
    for prompt, message in [
        ([[]], "must not be empty"),
        ([1, 10**9], "outside this model's vocabulary"),
        (["a", 1], "prompt"),
    ]:
        response = _post(base_url, "/v1/completions", {"prompt": prompt})
        assert response.status_code == 400, response.text
        assert message in response.json()["error"]["message"]
