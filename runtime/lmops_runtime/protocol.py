"""Messages between the Router and a ModelServer (through Serve deployment handles).

The Router speaks OpenAI and the seeds' HTTP endpoints to clients; it turns each call into one of these
requests so that a ModelServer never parses HTTP and stays testable on its own.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from lmops_runtime.config import Strategy, Task


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChatMessage(_Message):
    role: Literal["system", "user", "assistant", "tool"]
    content: str


class GenerateRequest(_Message):
    """One generation call; unset sampling fields fall back to the revision's GenerationDefaults.

    Exactly one of ``prompt`` and ``messages`` is set; ``messages`` go through the tokenizer's chat template
    (or a plain default template where the tokenizer has none).
    """

    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    max_new_tokens: int | None = None
    strategy: Strategy | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    num_beams: int | None = None
    stop: list[str] = Field(default_factory=list)
    seed: int | None = None


FinishReason = Literal["stop", "length"]


class GenerateResult(_Message):
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason


class StreamChunk(_Message):
    """One piece of a streamed generation; the last chunk carries ``finish_reason`` and the token counts."""

    text: str
    finish_reason: FinishReason | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class ClassifyRequest(_Message):
    texts: list[str]


class LabelScore(_Message):
    label: str
    score: float


class ClassifyResult(_Message):
    """Per input text, every label with its probability, best first."""

    predictions: list[list[LabelScore]]
    prompt_tokens: int


class EmbedRequest(_Message):
    texts: list[str]


class EmbedResult(_Message):
    embeddings: list[list[float]]
    prompt_tokens: int


class ScoreRequest(_Message):
    """Texts to score by teacher forcing (generate task only): the basis of perplexity."""

    texts: list[str]


class ScoreResult(_Message):
    """Per text, the summed log-likelihood of its tokens after the first, and how many tokens that is.

    Perplexity over a set is ``exp(-sum(log_likelihoods) / sum(token_counts))``.
    """

    log_likelihoods: list[float]
    token_counts: list[int]


class ServerInfo(_Message):
    """What the Router needs to know about a revision to validate requests before sending them."""

    model_name: str
    revision: str
    task: Task
    max_sequence_length: int
    device: str
    dtype: str


class InvalidRequestError(ValueError):
    """Raised by a ModelServer for a request it cannot serve as asked; the Router answers it with a 400."""


# The ModelServer deployment's handle methods (the Router calls exactly these):
#   generate(GenerateRequest) -> GenerateResult
#   generate_stream(GenerateRequest) -> AsyncIterator[StreamChunk]   (call with handle.options(stream=True))
#   classify(ClassifyRequest) -> ClassifyResult
#   embed(EmbedRequest) -> EmbedResult
#   score(ScoreRequest) -> ScoreResult                               (generate task only)
#   info() -> ServerInfo
# A request a server cannot serve as asked raises InvalidRequestError; anything else is a server fault.
