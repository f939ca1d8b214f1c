"""The ModelServer Serve deployment: one model revision, called by the Router through deployment handles."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import torch
from ray import serve

from lmops_runtime.autoscaling import QUEUE_METRIC
from lmops_runtime.config import SERVER_DEPLOYMENT, ServerArgs, Task
from lmops_runtime.engine.batching import MicroBatcher
from lmops_runtime.engine.encoders import check_length, classify, embed
from lmops_runtime.engine.generator import Backend, TextGenerator
from lmops_runtime.engine.scoring import score_texts
from lmops_runtime.loading import LoadedModel, load_model
from lmops_runtime.protocol import (
    ClassifyRequest,
    ClassifyResult,
    EmbedRequest,
    EmbedResult,
    GenerateBatch,
    GenerateBatchResult,
    GenerateRequest,
    GenerateResult,
    InvalidRequestError,
    LabelScore,
    ScoreRequest,
    ScoreResult,
    ServerInfo,
    StreamChunk,
)
from lmops_runtime.vllm_server import VllmServerImpl, select_engine

log = logging.getLogger("ray.serve")
T = TypeVar("T")


def _validated(model: type[T], value: T | dict[str, Any]) -> T:
    """Handles pass protocol objects; plain dicts (from other callers) are validated into them."""
    if isinstance(value, model):
        return value
    return model.model_validate(value)  # type: ignore[attr-defined,no-any-return]


def make_generator(loaded: LoadedModel, args: ServerArgs) -> TextGenerator:
    """Continuous batching where the model supports it, else static batching (logged, never silent)."""
    preferred: Backend = "continuous"
    try:
        return TextGenerator(loaded, args.batching, preferred)
    except Exception as error:
        log.warning("continuous batching unavailable for this model (%s); using static batching", error)
        return TextGenerator(loaded, args.batching, "static")


class ModelServerImpl:
    """One loaded model and its batching; plain Python so that local tests need no Serve."""

    def __init__(self, args: ServerArgs | dict[str, Any], *, device: str | None = None) -> None:
        self.args = _validated(ServerArgs, args)
        log.info("loading %s for revision %s", self.args.model.source, self.args.revision)
        self.loaded = load_model(self.args.model, device=device)
        self.task: Task = self.args.model.task
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lmops-encode")
        self.generator = make_generator(self.loaded, self.args) if self.task == "generate" else None
        self._encode_batcher: MicroBatcher[list[str], tuple[list[Any], list[int]]] = MicroBatcher(
            self._encode_batch, self.args.batching
        )
        self._closed = False

    def _require(self, task: Task) -> None:
        if self.task != task:
            raise InvalidRequestError(
                f"revision {self.args.revision} of {self.args.model_name} serves {self.task}, not {task}"
            )

    async def generate(self, request: GenerateRequest | dict[str, Any]) -> GenerateResult:
        self._require("generate")
        assert self.generator is not None
        return await self.generator.generate(_validated(GenerateRequest, request))

    async def generate_stream(self, request: GenerateRequest | dict[str, Any]) -> AsyncIterator[StreamChunk]:
        self._require("generate")
        assert self.generator is not None
        async for chunk in self.generator.stream(_validated(GenerateRequest, request)):
            yield chunk

    async def generate_batch(self, batch: GenerateBatch | dict[str, Any]) -> GenerateBatchResult:
        """A prompt list and/or n > 1 in one call, so every choice of a response comes from this revision."""
        self._require("generate")
        assert self.generator is not None
        results = await self.generator.generate_many(_validated(GenerateBatch, batch).requests)
        return GenerateBatchResult(results=results)

    async def generate_batch_stream(
        self, batch: GenerateBatch | dict[str, Any]
    ) -> AsyncIterator[StreamChunk]:
        self._require("generate")
        assert self.generator is not None
        async for chunk in self.generator.stream_many(_validated(GenerateBatch, batch).requests):
            yield chunk

    async def classify(self, request: ClassifyRequest | dict[str, Any]) -> ClassifyResult:
        self._require("classify")
        texts = _validated(ClassifyRequest, request).texts
        check_length(self.loaded, texts)
        predictions, lengths = await self._encode_batcher.submit(texts)
        return ClassifyResult(
            predictions=[[LabelScore.model_validate(s) for s in row] for row in predictions],
            prompt_tokens=sum(lengths),
        )

    async def embed(self, request: EmbedRequest | dict[str, Any]) -> EmbedResult:
        self._require("embed")
        texts = _validated(EmbedRequest, request).texts
        check_length(self.loaded, texts)
        vectors, lengths = await self._encode_batcher.submit(texts)
        return EmbedResult(embeddings=vectors, prompt_tokens=sum(lengths))

    async def score(self, request: ScoreRequest | dict[str, Any]) -> ScoreResult:
        """Teacher-forced log-likelihoods, on the model thread with the continuous batch paused."""
        self._require("generate")
        assert self.generator is not None
        texts = _validated(ScoreRequest, request).texts
        check_length(self.loaded, texts)  # reject bad input here, before waiting for the model thread
        loaded = self.loaded
        log_likelihoods, counts = await self.generator.run_exclusive(lambda: score_texts(loaded, texts))
        return ScoreResult(log_likelihoods=log_likelihoods, token_counts=counts)

    async def _encode_batch(self, requests: list[list[str]]) -> list[tuple[list[Any], list[int]]]:
        """One forward pass over every text of every waiting request, split back per request."""
        texts = [text for request in requests for text in request]
        run: Callable[[LoadedModel, Sequence[str]], tuple[Sequence[Any], list[int]]] = (
            classify if self.task == "classify" else embed
        )
        outputs, lengths = await asyncio.get_running_loop().run_in_executor(
            self._executor, run, self.loaded, texts
        )
        results: list[tuple[list[Any], list[int]]] = []
        start = 0
        for request in requests:
            end = start + len(request)
            results.append((list(outputs[start:end]), lengths[start:end]))
            start = end
        return results

    def info(self) -> ServerInfo:
        dtype = "int8" if self.loaded.quantized else str(self.loaded.dtype).removeprefix("torch.")
        return ServerInfo(
            model_name=self.args.model_name,
            revision=self.args.revision,
            task=self.task,
            max_sequence_length=self.loaded.max_sequence_length,
            device=str(self.loaded.device),
            dtype=dtype,
        )

    def queue_length(self) -> int:
        """Requests this replica holds that wait for a batch (the queue-length autoscaling metric)."""
        return self.generator.queue_length() if self.generator is not None else self._encode_batcher.waiting

    async def check_health(self) -> None:
        """A real one-token forward pass; fails when the model errors or produces non-finite outputs."""
        if self.generator is not None:
            self.generator.check()
            await self.generator.run_exclusive(self._probe)
        else:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._probe)

    def _probe(self) -> None:
        tokenizer = self.loaded.tokenizer
        token = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        if self.task == "generate" and token is not None:
            inputs = {"input_ids": torch.tensor([[int(token)]], device=self.loaded.device)}
        else:
            encoded = tokenizer(["ok"], return_tensors="pt")
            inputs = {name: tensor[:, :1].to(self.loaded.device) for name, tensor in encoded.items()}
        with torch.inference_mode():
            output = self.loaded.model(**inputs)
        values = output.logits if self.task != "embed" else output.last_hidden_state
        if not bool(torch.isfinite(values).all()):
            raise RuntimeError("model health check failed: the forward pass produced non-finite values")

    def close(self) -> None:
        """Stop the batching thread and workers; idempotent, so both ``__del__`` and tests may call it."""
        if self._closed:
            return
        self._closed = True
        self._encode_batcher.close()
        if self.generator is not None:
            self.generator.close()
        self._executor.shutdown(wait=False, cancel_futures=True)


@serve.deployment(
    name=SERVER_DEPLOYMENT,
    max_ongoing_requests=64,
    health_check_period_s=10,
    health_check_timeout_s=30,
    graceful_shutdown_timeout_s=20,
)
class ModelServer:
    """Serve wrapper of ModelServerImpl; its methods are exactly the handle API listed in protocol.py.

    Load failures raise from ``__init__``, so Serve marks the application DEPLOY_FAILED with the message.
    """

    def __init__(self, args: ServerArgs | dict[str, Any]) -> None:
        validated = _validated(ServerArgs, args)
        self._impl: ModelServerImpl | VllmServerImpl
        if select_engine(validated.model) == "vllm":
            self._impl = VllmServerImpl(validated)
        else:
            self._impl = ModelServerImpl(validated)

    async def generate(self, request: GenerateRequest | dict[str, Any]) -> GenerateResult:
        return await self._impl.generate(request)

    async def generate_stream(self, request: GenerateRequest | dict[str, Any]) -> AsyncIterator[StreamChunk]:
        async for chunk in self._impl.generate_stream(request):
            yield chunk

    async def generate_batch(self, batch: GenerateBatch | dict[str, Any]) -> GenerateBatchResult:
        return await self._impl.generate_batch(batch)

    async def generate_batch_stream(
        self, batch: GenerateBatch | dict[str, Any]
    ) -> AsyncIterator[StreamChunk]:
        async for chunk in self._impl.generate_batch_stream(batch):
            yield chunk

    async def classify(self, request: ClassifyRequest | dict[str, Any]) -> ClassifyResult:
        return await self._impl.classify(request)

    async def embed(self, request: EmbedRequest | dict[str, Any]) -> EmbedResult:
        return await self._impl.embed(request)

    async def score(self, request: ScoreRequest | dict[str, Any]) -> ScoreResult:
        return await self._impl.score(request)

    async def info(self) -> ServerInfo:
        return self._impl.info()

    async def check_health(self) -> None:
        await self._impl.check_health()

    async def engine_stats(self) -> dict[str, float]:
        """The engine's own metrics (vLLM's scheduler and latencies); empty for the transformers engine."""
        return self._impl.engine_stats() if isinstance(self._impl, VllmServerImpl) else {}

    def record_autoscaling_stats(self) -> dict[str, float]:
        """Serve's custom autoscaling metric hook: the engine's queue length, for ``QueueLengthPolicy``."""
        return {QUEUE_METRIC: float(self._impl.queue_length())}

    def __del__(self) -> None:
        # Serve calls __del__ when it shuts a replica down; the CB thread must not outlive it.
        impl = getattr(self, "_impl", None)
        if impl is not None:
            impl.close()
