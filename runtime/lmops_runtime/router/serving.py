"""Serving: one class per endpoint family, turning a parsed request into a typed response.

As vLLM's ``entrypoints/openai/serving_*.py``: the ingress only delegates, ``Intake`` admits and parses,
``Dispatcher`` routes and calls, and each class here builds its endpoint's response model
(``router.responses``). Every answer names the revision that served it in the revision header.
No ``from __future__ import annotations``: ``Request`` is used in signatures FastAPI may inspect.
"""

import time
import uuid

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from lmops_runtime.contract import REVISION_HEADER
from lmops_runtime.protocol import (
    ClassifyRequest,
    ClassifyResult,
    EmbedRequest,
    EmbedResult,
    ScoreRequest,
    ScoreResult,
    StreamChunk,
)
from lmops_runtime.router.dispatch import Dispatcher
from lmops_runtime.router.errors import ApiError, bad_request
from lmops_runtime.router.intake import Intake
from lmops_runtime.router.openai_format import chat_logprobs, completion_logprobs, text_length
from lmops_runtime.router.responses import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionResponse,
    ChatDelta,
    CompletionChoice,
    CompletionResponse,
    Embedding,
    EmbeddingResponse,
    EmbedResponse,
    ModelCard,
    ModelList,
    Prediction,
    PredictResponse,
    PromptUsage,
    Score,
    ScoreResponse,
)
from lmops_runtime.router.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    ScoreApiRequest,
    SeedGenerateRequest,
    encode_embedding,
)


def answer(body: BaseModel, revision: str | None = None) -> JSONResponse:
    headers = {REVISION_HEADER: revision} if revision is not None else None
    return JSONResponse(body.model_dump(mode="json"), headers=headers)


class Serving:
    """What every endpoint class shares: the intake, the dispatcher and the model's name."""

    def __init__(self, intake: Intake, dispatch: Dispatcher) -> None:
        self.intake = intake
        self.dispatch = dispatch
        self.model_name = intake.model_name


class ServingCompletion(Serving):
    async def create(self, request: Request) -> Response:
        """Legacy completions with ``n``, prompt lists, ``echo`` and ``logprobs`` (see CompletionRequest);
        choice ``i * n + j`` is prompt ``i``'s ``j``-th answer."""
        req, started = await self.intake.read(request, CompletionRequest)
        try:
            self.intake.check_model(req.model)
            self.intake.check_tokens(req.max_tokens, "max_tokens")
        except ApiError as exc:
            raise self.intake.reject(exc, started) from None
        gens = req.to_generate_requests()
        envelope = CompletionResponse(
            id=f"cmpl-{uuid.uuid4().hex}", created=int(time.time()), model=self.model_name, choices=[]
        )
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            offsets = [0] * len(gens)

            def render(chunk: StreamChunk, first: bool) -> BaseModel:
                text = (chunk.prompt_text or "") + chunk.text  # the prompt comes with an echo's first chunk
                logprobs = None
                if req.logprobs is not None:
                    entries = [*(chunk.prompt_logprobs or []), *(chunk.logprobs or [])]
                    logprobs = completion_logprobs(entries, offsets[chunk.index])
                    offsets[chunk.index] += text_length(entries)
                return CompletionChoice(
                    index=chunk.index, text=text, logprobs=logprobs, finish_reason=chunk.finish_reason
                )

            return await self.dispatch.stream(request, gens, req.n, envelope, render, include_usage)
        revision, results, usage = await self.dispatch.generate_all(request, gens, req.n)
        choices = []
        for index, result in enumerate(results):
            logprobs = None
            if req.logprobs is not None:
                logprobs = completion_logprobs([*(result.prompt_logprobs or []), *(result.logprobs or [])])
            text = (result.prompt_text or "") + result.text  # prompt_text is set with echo
            choices.append(
                CompletionChoice(
                    index=index, text=text, logprobs=logprobs, finish_reason=result.finish_reason
                )
            )
        return answer(envelope.model_copy(update={"choices": choices, "usage": usage}), revision)


class ServingChat(Serving):
    async def create(self, request: Request) -> Response:
        """Chat completions with ``n`` and ``logprobs``/``top_logprobs`` (see ChatCompletionRequest)."""
        req, started = await self.intake.read(request, ChatCompletionRequest)
        try:
            self.intake.check_model(req.model)
            self.intake.check_tokens(
                req.token_budget(), "max_completion_tokens" if req.max_completion_tokens else "max_tokens"
            )
        except ApiError as exc:
            raise self.intake.reject(exc, started) from None
        gens = req.to_generate_requests()
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        if req.stream:
            include_usage = bool(req.stream_options and req.stream_options.include_usage)
            chunk_envelope = ChatCompletionChunk(
                id=completion_id, created=created, model=self.model_name, choices=[]
            )

            def render_chat(chunk: StreamChunk, first: bool) -> BaseModel:
                return ChatChunkChoice(
                    index=chunk.index,
                    delta=ChatDelta(content=chunk.text, role="assistant" if first else None),
                    logprobs=chat_logprobs(chunk.logprobs or []) if req.logprobs else None,
                    finish_reason=chunk.finish_reason,
                )

            return await self.dispatch.stream(
                request, gens, req.n, chunk_envelope, render_chat, include_usage
            )
        revision, results, usage = await self.dispatch.generate_all(request, gens, req.n)
        body = ChatCompletionResponse(
            id=completion_id,
            created=created,
            model=self.model_name,
            choices=[
                ChatChoice(
                    index=index,
                    message=AssistantMessage(content=result.text),
                    logprobs=chat_logprobs(result.logprobs or []) if req.logprobs else None,
                    finish_reason=result.finish_reason,
                )
                for index, result in enumerate(results)
            ],
            usage=usage,
        )
        return answer(body, revision)


class ServingEmbedding(Serving):
    async def create(self, request: Request) -> Response:
        """OpenAI's /v1/embeddings (float lists or base64)."""
        req, started = await self.intake.read(request, EmbeddingRequest)
        try:
            self.intake.check_model(req.model)
            if not req.texts():
                raise bad_request("'input' must not be empty.", param="input")
        except ApiError as exc:
            raise self.intake.reject(exc, started) from None
        revision, result = await self.embed_texts(request, req.texts())
        body = EmbeddingResponse(
            data=[
                Embedding(index=i, embedding=encode_embedding(vec, req.encoding_format))
                for i, vec in enumerate(result.embeddings)
            ],
            model=self.model_name,
            usage=PromptUsage(prompt_tokens=result.prompt_tokens, total_tokens=result.prompt_tokens),
        )
        return answer(body, revision)

    async def embed(self, request: Request) -> Response:
        """The seeds' /embed: ``{"texts": [...]}`` -> raw vectors."""
        revision, result = await self.embed_texts(request, await self.intake.read_texts(request))
        dims = len(result.embeddings[0]) if result.embeddings else 0
        return answer(
            EmbedResponse(embeddings=result.embeddings, dimensions=dims, revision=revision), revision
        )

    async def embed_texts(self, request: Request, texts: list[str]) -> tuple[str, EmbedResult]:
        revision, result, latency = await self.dispatch.unary(request, "embed", EmbedRequest(texts=texts))
        assert isinstance(result, EmbedResult)
        self.dispatch.telemetry.record(revision, 200, latency, result.prompt_tokens)
        return revision, result


class ServingModels(Serving):
    def __init__(self, intake: Intake, dispatch: Dispatcher) -> None:
        super().__init__(intake, dispatch)
        self.created = int(time.time())

    async def list(self, request: Request) -> Response:
        await self.intake.admit(request)
        return answer(ModelList(data=[ModelCard(id=self.model_name, created=self.created)]))


class ServingSeeds(Serving):
    """The seed documents' endpoints: /generate, /predict, and lmops' /v1/score."""

    async def generate(self, request: Request) -> Response:
        req, started = await self.intake.read(request, SeedGenerateRequest)
        try:
            self.intake.check_tokens(req.max_new_tokens, "max_new_tokens")
        except ApiError as exc:
            raise self.intake.reject(exc, started) from None
        revision, results, _ = await self.dispatch.generate_all(request, [req.to_generate_request()], 1)
        body = {**results[0].model_dump(exclude={"logprobs", "prompt_logprobs"}), "revision": revision}
        return JSONResponse(body, headers={REVISION_HEADER: revision})

    async def predict(self, request: Request) -> Response:
        texts = await self.intake.read_texts(request)
        revision, result, latency = await self.dispatch.unary(
            request, "classify", ClassifyRequest(texts=texts)
        )
        assert isinstance(result, ClassifyResult)
        self.dispatch.telemetry.record(revision, 200, latency, result.prompt_tokens)
        predictions = [
            Prediction(label=scores[0].label, score=scores[0].score, scores=scores)
            for scores in result.predictions
        ]
        return answer(PredictResponse(predictions=predictions, revision=revision), revision)

    async def score(self, request: Request) -> Response:
        """Log-likelihood per text: ``{"input": str | [str], "model"?: str}`` -> ``data[i].log_likelihood``
        and ``data[i].tokens`` (tokens scored: all but the first); 400 on a revision that is not generate."""
        req, started = await self.intake.read(request, ScoreApiRequest)
        try:
            if req.model is not None:
                self.intake.check_model(req.model)
            if not req.texts():
                raise bad_request("'input' must not be empty.", param="input")
        except ApiError as exc:
            raise self.intake.reject(exc, started) from None
        revision, result, latency = await self.dispatch.unary(
            request, "score", ScoreRequest(texts=req.texts())
        )
        assert isinstance(result, ScoreResult)
        scored = sum(result.token_counts)
        self.dispatch.telemetry.record(revision, 200, latency, scored)
        body = ScoreResponse(
            model=self.model_name,
            data=[
                Score(index=i, log_likelihood=ll, tokens=n)
                for i, (ll, n) in enumerate(zip(result.log_likelihoods, result.token_counts, strict=True))
            ],
            usage=PromptUsage(prompt_tokens=scored, total_tokens=scored),
            revision=revision,
        )
        return answer(body, revision)
