"""Typed response bodies of the Router's endpoints: OpenAI's protocol and the seeds' own endpoints.

As vLLM's ``entrypoints/openai/protocol.py``: each response is a pydantic model, so a field that drifts from
OpenAI's shape is a type error in the serving code, not a silent difference on the wire. Fields OpenAI
sends as ``null`` are declared ``X | None`` and serialised (the openai client expects the keys present).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from lmops_runtime.protocol import LabelScore


def _absent_when_none(value: Any) -> bool:
    return value is None


# A field OpenAI leaves out (rather than sending null) where it has no value.
OMITTED_WHEN_NONE: Any = Field(default=None, exclude_if=_absent_when_none)


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int) -> Usage:
        return cls(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        )


class PromptUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


# ---- logprobs ---------------------------------------------------------------------------------------------


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]


class TopTokenLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class ChatTokenLogprob(BaseModel):
    token: str
    logprob: float | None  # a number for every generated token (only an echoed prompt's first has none)
    bytes: list[int] | None
    top_logprobs: list[TopTokenLogprob]


class ChatLogprobs(BaseModel):
    content: list[ChatTokenLogprob]
    refusal: None = None


# ---- completions ------------------------------------------------------------------------------------------


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None
    finish_reason: str | None


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = OMITTED_WHEN_NONE  # absent from stream chunks, as OpenAI sends them


# ---- chat -------------------------------------------------------------------------------------------------


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: ChatLogprobs | None
    finish_reason: str | None


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class ChatDelta(BaseModel):
    content: str
    role: Literal["assistant"] | None = OMITTED_WHEN_NONE  # only in a choice's first chunk


class ChatChunkChoice(BaseModel):
    index: int
    delta: ChatDelta
    logprobs: ChatLogprobs | None
    finish_reason: str | None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = OMITTED_WHEN_NONE  # only in the usage-only chunk ending a stream with include_usage


# ---- embeddings, models -----------------------------------------------------------------------------------


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str  # a base64 string with encoding_format=base64


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: PromptUsage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "lmops"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# ---- lmops' own endpoints ---------------------------------------------------------------------------------


class Score(BaseModel):
    object: Literal["score"] = "score"
    index: int
    log_likelihood: float
    tokens: int


class ScoreResponse(BaseModel):
    object: Literal["list"] = "list"
    model: str
    data: list[Score]
    usage: PromptUsage
    revision: str


class Prediction(BaseModel):
    label: str
    score: float
    scores: list[LabelScore]


class PredictResponse(BaseModel):
    predictions: list[Prediction]
    revision: str


class EmbedResponse(BaseModel):
    embeddings: list[list[float]]
    dimensions: int
    revision: str
