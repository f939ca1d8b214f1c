"""Messages between the Router and a ModelServer (through Serve deployment handles).

The Router speaks OpenAI and the seeds' HTTP endpoints to clients; it turns each call into one of these
requests so that a ModelServer never parses HTTP and stays testable on its own.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from lmops_runtime.config import Strategy, Task

#: The most alternatives a token's logprobs may list (OpenAI's chat cap; completions cap at 5 in the Router).
MAX_TOP_LOGPROBS = 20
#: OpenAI's bounds: penalties in [-2, 2], a logit bias in [-100, 100] on at most 300 tokens.
MAX_PENALTY = 2.0
MAX_LOGIT_BIAS = 100.0
MAX_LOGIT_BIAS_TOKENS = 300


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChatMessage(_Message):
    role: Literal["system", "user", "assistant", "tool"]
    content: str


class GenerateRequest(_Message):
    """One generation call; unset sampling fields fall back to the revision's GenerationDefaults.

    Exactly one of ``prompt`` (text, or token ids as OpenAI's completions take them) and ``messages`` is set;
    ``messages`` go through the tokenizer's chat template (or a plain default template where the tokenizer has
    none). ``logprobs`` (0..20 alternatives) asks for each generated token's log-probability; with ``echo``
    the prompt's tokens are scored too, and ``max_new_tokens`` 0 then means "score the prompt only".
    """

    prompt: str | list[StrictInt] | None = None
    messages: list[ChatMessage] | None = None
    max_new_tokens: int | None = None
    strategy: Strategy | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    num_beams: int | None = None
    stop: list[str] = Field(default_factory=list)
    seed: int | None = None
    logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    echo: bool = False
    #: OpenAI's penalties on tokens generated so far: ``frequency`` per occurrence, ``presence`` once.
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    #: Token id -> value added to its logit before the token is picked.
    logit_bias: dict[int, float] = Field(default_factory=dict)
    #: Streamed tokens produced within this many milliseconds go out as one chunk (the first never waits);
    #: the Router sets it from ``spec.serving.streamIntervalMilliseconds``.
    stream_interval_ms: int = Field(default=0, ge=0, le=1000)
    #: The replica's budget of streamed chunks per second over all its streams (0: none), which widens
    #: each stream's window while many are open; from ``spec.serving.streamChunksPerSecond``.
    stream_chunks_per_s: int = Field(default=0, ge=0)


FinishReason = Literal["stop", "length"]


class TopLogprob(_Message):
    """One likely token at a position: its id, decoded text, raw UTF-8 bytes and log-probability."""

    token_id: int
    token: str
    bytes: list[int]
    logprob: float


class TokenLogprob(_Message):
    """A token that was generated (or echoed) with its log-probability under the model's own distribution.

    ``logprob`` is None only for a prompt's first token, which nothing predicts; ``top`` then is None too.
    """

    token_id: int
    token: str
    bytes: list[int]
    logprob: float | None
    top: list[TopLogprob] | None = None


class GenerateResult(_Message):
    """``logprobs`` is set when the request asked for logprobs; ``prompt_logprobs`` when it also asked for
    ``echo``. ``prompt_text`` is set with ``echo``: the prompt as text (decoded, for a token-id prompt)."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason
    logprobs: list[TokenLogprob] | None = None
    prompt_logprobs: list[TokenLogprob] | None = None
    prompt_text: str | None = None


class StreamChunk(_Message):
    """One piece of a streamed generation; the last chunk carries ``finish_reason`` and the token counts.

    ``index`` says which request of a GenerateBatch the chunk belongs to. ``logprobs`` holds the tokens that
    arrived since the previous chunk (so a chunk may carry tokens whose text is still held back, and the
    reverse); the first chunk of an echo request carries ``prompt_text`` (and ``prompt_logprobs``).
    """

    text: str
    index: int = 0
    finish_reason: FinishReason | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    logprobs: list[TokenLogprob] | None = None
    prompt_logprobs: list[TokenLogprob] | None = None
    prompt_text: str | None = None


#: Requests one GenerateBatch may hold (the Router's cap on prompts x n is lower).
MAX_BATCH_REQUESTS = 64


class GenerateBatch(_Message):
    """Several generations served together by one revision: a prompt list and/or ``n`` > 1.

    One handle call instead of one per choice keeps all choices of a response on the same revision and counts
    the response once.
    """

    requests: list[GenerateRequest] = Field(min_length=1, max_length=MAX_BATCH_REQUESTS)


class GenerateBatchResult(_Message):
    results: list[GenerateResult]


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
#   generate_batch(GenerateBatch) -> GenerateBatchResult              (results in request order)
#   generate_batch_stream(GenerateBatch) -> AsyncIterator[StreamChunk] (chunks of all requests, by index)
#   classify(ClassifyRequest) -> ClassifyResult
#   embed(EmbedRequest) -> EmbedResult
#   score(ScoreRequest) -> ScoreResult                               (generate task only)
#   info() -> ServerInfo
# A request a server cannot serve as asked raises InvalidRequestError; anything else is a server fault.
