"""OpenAI-compatible and seed-endpoint request schemas, and their mapping to the ModelServer protocol.

Requests forbid unknown fields: a parameter the Router would silently ignore is answered with a 400 instead,
so that a client never believes a setting took effect when it did not. OpenAI's ``user`` (an end-user id
for the provider's abuse monitoring) is the one field taken and not used: it sets nothing, and clients such
as chat front ends send it on every call.
"""

from __future__ import annotations

import base64
import struct
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from lmops_runtime.config import Strategy
from lmops_runtime.protocol import MAX_PENALTY, ChatMessage, GenerateRequest

#: Choices one completions or chat call may ask for (prompts x n): each is a full generation.
MAX_CHOICES = 16
#: OpenAI's caps on alternatives per token: 5 for legacy completions, 20 for chat.
MAX_COMPLETION_LOGPROBS = 5
MAX_CHAT_TOP_LOGPROBS = 20


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StreamOptions(_Request):
    include_usage: bool = False


class _Sampling(_Request):
    """Generation knobs shared by completions, chat and /generate.

    ``strategy``, ``top_k`` and ``num_beams`` extend the OpenAI schema with the seeds' decoding strategies.
    ``logit_bias`` maps token ids (JSON object keys, so strings) to values added to their logits.
    """

    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=1)
    strategy: Strategy | None = None
    num_beams: int | None = Field(default=None, ge=1, le=16)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float = Field(default=0.0, ge=-MAX_PENALTY, le=MAX_PENALTY)
    frequency_penalty: float = Field(default=0.0, ge=-MAX_PENALTY, le=MAX_PENALTY)
    logit_bias: dict[int, float] | None = None

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def resolved_strategy(self) -> Strategy | None:
        """OpenAI clients say "sample" through temperature/top_p; temperature 0 means greedy."""
        if self.strategy is not None:
            return self.strategy
        if self.num_beams is not None and self.num_beams > 1:
            return "beam"
        if self.temperature is not None:
            return "greedy" if self.temperature == 0.0 else "sample"
        if self.top_p is not None or self.top_k is not None:
            return "sample"
        return None

    def to_generate(
        self,
        *,
        prompt: str | list[int] | None,
        messages: list[ChatMessage] | None,
        max_new_tokens: int | None,
        seed: int | None = None,
        logprobs: int | None = None,
        echo: bool = False,
    ) -> GenerateRequest:
        strategy = self.resolved_strategy()
        return GenerateRequest(
            prompt=prompt,
            messages=messages,
            max_new_tokens=max_new_tokens,
            strategy=strategy,
            temperature=self.temperature if strategy != "greedy" else None,
            top_k=self.top_k,
            top_p=self.top_p,
            num_beams=self.num_beams,
            stop=self.stop_list(),
            seed=self.seed if seed is None else seed,
            logprobs=logprobs,
            echo=echo,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            logit_bias=self.logit_bias or {},
        )

    def choice_seed(self, j: int) -> int | None:
        """Choice ``j`` of ``n`` samples with ``seed + j``: reproducible, yet the choices differ."""
        return None if self.seed is None else self.seed + j


def _check_n(n: int, prompts: int, best_of: int | None) -> None:
    if best_of is not None and best_of != n:
        raise ValueError(
            f"best_of={best_of} is not supported: only best_of equal to n (or unset) is, "
            "since this server does not rank candidates"
        )
    if prompts * n > MAX_CHOICES:
        raise ValueError(
            f"{prompts} prompt(s) x n={n} asks for {prompts * n} choices, "
            f"more than the limit of {MAX_CHOICES}"
        )


class CompletionRequest(_Sampling):
    """OpenAI's legacy completions: a prompt or a list of prompts (text or token ids), each answered n times.

    ``logprobs`` (0..5) returns each token's log-probability under the model's own distribution (log_softmax
    of the raw logits, before temperature, top-k and top-p, as vLLM does) with that many alternatives.
    ``echo`` puts the prompt before the completion; with ``logprobs`` its tokens are scored by teacher forcing
    (the first gets null), and ``max_tokens`` 0 then scores the prompt without generating.
    """

    model: str
    prompt: str | list[str] | list[StrictInt] | list[list[StrictInt]]
    user: str | None = None
    max_tokens: int | None = Field(default=None, ge=0)
    n: int = Field(default=1, ge=1, le=MAX_CHOICES)
    best_of: int | None = Field(default=None, ge=1)
    echo: bool = False
    logprobs: int | None = Field(default=None, ge=0, le=MAX_COMPLETION_LOGPROBS)
    stream: bool = False
    stream_options: StreamOptions | None = None

    @model_validator(mode="after")
    def _check(self) -> CompletionRequest:
        if isinstance(self.prompt, list) and not self.prompt:
            raise ValueError("'prompt' must not be an empty list")
        if any(isinstance(prompt, list) and not prompt for prompt in self.prompts()):
            raise ValueError("a token-id prompt must not be empty")
        if self.max_tokens == 0 and not self.echo:
            raise ValueError("max_tokens 0 is allowed only with echo (to score the prompt)")
        _check_n(self.n, len(self.prompts()), self.best_of)
        return self

    def prompts(self) -> list[str | list[int]]:
        """Each prompt: text, or token ids (a flat list of ints is one prompt, as OpenAI reads it)."""
        prompt = self.prompt
        if isinstance(prompt, str):
            return [prompt]
        if all(isinstance(token, int) for token in prompt):
            return [cast(list[int], prompt)]
        return [cast(str | list[int], item) for item in prompt]

    def to_generate_requests(self) -> list[GenerateRequest]:
        """One request per choice, in choice order: choice ``i * n + j`` is prompt ``i``'s ``j``-th."""
        return [
            self.to_generate(
                prompt=prompt,
                messages=None,
                max_new_tokens=self.max_tokens,
                seed=self.choice_seed(j),
                logprobs=self.logprobs,
                echo=self.echo,
            )
            for prompt in self.prompts()
            for j in range(self.n)
        ]


class TextPart(_Request):
    type: Literal["text"]
    text: str


class ChatInputMessage(_Request):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[TextPart]
    name: str | None = None

    def to_protocol(self) -> ChatMessage:
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        # "developer" is OpenAI's newer name for the system role.
        role = "system" if self.role == "developer" else self.role
        return ChatMessage(role=role, content=text)


class ResponseFormat(_Request):
    """Plain text only: JSON modes need constrained decoding, which this server does not do (a 400)."""

    type: Literal["text"]


class ChatCompletionRequest(_Sampling):
    """OpenAI chat completions; ``logprobs: true`` with ``top_logprobs`` (0..20) alternatives per token,
    from the model's own distribution (see CompletionRequest)."""

    model: str
    messages: list[ChatInputMessage] = Field(min_length=1)
    user: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    n: int = Field(default=1, ge=1, le=MAX_CHOICES)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_CHAT_TOP_LOGPROBS)
    response_format: ResponseFormat | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None

    @model_validator(mode="after")
    def _check(self) -> ChatCompletionRequest:
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs requires logprobs to be true")
        _check_n(self.n, 1, None)
        return self

    def token_budget(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def to_generate_requests(self) -> list[GenerateRequest]:
        messages = [m.to_protocol() for m in self.messages]
        top_n = (self.top_logprobs or 0) if self.logprobs else None
        return [
            self.to_generate(
                prompt=None,
                messages=messages,
                max_new_tokens=self.token_budget(),
                seed=self.choice_seed(j),
                logprobs=top_n,
            )
            for j in range(self.n)
        ]


class EmbeddingRequest(_Request):
    model: str
    input: str | list[str]
    user: str | None = None
    encoding_format: Literal["float", "base64"] = "float"

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class ScoreApiRequest(_Request):
    """``POST /v1/score``: teacher-forced log-likelihood of each ``input`` text (generate models only).

    ``model`` is optional (checked when given) because this is an lmops extension, not an OpenAI endpoint.
    """

    model: str | None = None
    input: str | list[str]

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class SeedGenerateRequest(_Sampling):
    """The seeds' ``POST /generate``: GPT-2-style generation with explicit decoding strategy."""

    prompt: str
    max_new_tokens: int | None = Field(default=None, ge=1)

    def to_generate_request(self) -> GenerateRequest:
        return self.to_generate(prompt=self.prompt, messages=None, max_new_tokens=self.max_new_tokens)


class TextsRequest(_Request):
    """The seeds' ``POST /predict`` and ``POST /embed``: one ``text`` or a list of ``texts``."""

    text: str | None = None
    texts: list[str] | None = None

    def all_texts(self) -> list[str]:
        if (self.text is None) == (self.texts is None):
            raise ValueError("give exactly one of 'text' and 'texts'")
        values = [self.text] if self.text is not None else list(self.texts or [])
        if not values:
            raise ValueError("'texts' must not be empty")
        return values


def encode_embedding(vector: list[float], encoding_format: str) -> list[float] | str:
    """OpenAI's base64 format is little-endian float32, which the openai client requests by default."""
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
