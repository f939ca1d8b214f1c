"""OpenAI-compatible and seed-endpoint request schemas, and their mapping to the ModelServer protocol.

Requests forbid unknown fields: a parameter the Router would silently ignore is answered with a 400 instead,
so that a client never believes a setting took effect when it did not.
"""

from __future__ import annotations

import base64
import struct
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lmops_runtime.config import Strategy
from lmops_runtime.protocol import ChatMessage, GenerateRequest


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StreamOptions(_Request):
    include_usage: bool = False


class _Sampling(_Request):
    """Generation knobs shared by completions, chat and /generate.

    ``strategy``, ``top_k`` and ``num_beams`` extend the OpenAI schema with the seeds' decoding strategies.
    """

    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=1)
    strategy: Strategy | None = None
    num_beams: int | None = Field(default=None, ge=1, le=16)
    stop: str | list[str] | None = None
    seed: int | None = None

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
        self, *, prompt: str | None, messages: list[ChatMessage] | None, max_new_tokens: int | None
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
            seed=self.seed,
        )


class CompletionRequest(_Sampling):
    model: str
    prompt: str | list[str]
    max_tokens: int | None = Field(default=None, ge=1)
    n: int = Field(default=1, ge=1, le=1)
    stream: bool = False
    stream_options: StreamOptions | None = None

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and len(value) != 1:
            raise ValueError("exactly one prompt per request is supported")
        return value

    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    def to_generate_request(self) -> GenerateRequest:
        return self.to_generate(prompt=self.prompt_text(), messages=None, max_new_tokens=self.max_tokens)


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


class ChatCompletionRequest(_Sampling):
    model: str
    messages: list[ChatInputMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    n: int = Field(default=1, ge=1, le=1)
    stream: bool = False
    stream_options: StreamOptions | None = None

    def token_budget(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def to_generate_request(self) -> GenerateRequest:
        messages = [m.to_protocol() for m in self.messages]
        return self.to_generate(prompt=None, messages=messages, max_new_tokens=self.token_budget())


class EmbeddingRequest(_Request):
    model: str
    input: str | list[str]
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
