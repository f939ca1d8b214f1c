"""The ModelServer's handle API served by the vLLM engine (task generate only).

ModelServer picks this implementation when a revision's engine resolves to vLLM (``select_engine``), so the
Router, revisions, canary and OpenAI surface stay exactly as they are. The tokenizer is lmops' own loader's
(chat template, padding, error messages); the weights are vLLM's to load.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import AsyncIterator
from typing import Any, Literal

from lmops_runtime.config import ModelSpec, ServerArgs
from lmops_runtime.engine_metrics import EngineMetricsPusher
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
    ScoreRequest,
    ScoreResult,
    ServerInfo,
    StreamChunk,
)

log = logging.getLogger("ray.serve")
EngineName = Literal["vllm", "transformers"]


def vllm_available() -> bool:
    """Whether this environment (runtime image) has vLLM installed."""
    return importlib.util.find_spec("vllm") is not None


def select_engine(spec: ModelSpec) -> EngineName:
    """``auto``: vLLM for generation where the image has it, else transformers; classify/embed: transformers.

    An explicit ``vllm`` on an image without it, or for a task vLLM does not serve here, fails the load with
    a message that says what to change (the operator also rejects the second case).
    """
    from lmops_runtime.loading import ModelLoadError

    if spec.engine == "transformers":
        return "transformers"
    if spec.engine == "vllm":
        if spec.task != "generate":
            raise ModelLoadError(f"engine vllm serves task generate only, not {spec.task}")
        if not vllm_available():
            raise ModelLoadError(
                "engine vllm needs a runtime image with vLLM installed (the lmops-runtime vllm variants)"
            )
        return "vllm"
    return "vllm" if spec.task == "generate" and vllm_available() else "transformers"


def _validated(model: type[Any], value: Any) -> Any:
    return value if isinstance(value, model) else model.model_validate(value)


class VllmServerImpl:
    """One revision on a vLLM AsyncLLM; the methods are ModelServerImpl's handle API."""

    def __init__(self, args: ServerArgs | dict[str, Any]) -> None:
        from transformers import AutoConfig

        from lmops_runtime.engine.vllm_engine import VllmGenerator
        from lmops_runtime.loading import ModelLoadError, load_tokenizer, max_sequence_length
        from lmops_runtime.sources import resolve_source

        self.args: ServerArgs = _validated(ServerArgs, args)
        spec = self.args.model
        log.info("loading %s on vLLM for revision %s", spec.source, self.args.revision)
        try:
            path = resolve_source(spec)
        except Exception as error:
            raise ModelLoadError(f"cannot resolve model source {spec.source!r}: {error}") from error
        self.tokenizer = load_tokenizer(path, spec)
        config = AutoConfig.from_pretrained(path, trust_remote_code=spec.trust_remote_code)
        self.max_sequence_length = max_sequence_length(spec, config)
        self.generator = VllmGenerator(
            spec,
            path,
            self.tokenizer,
            self.max_sequence_length,
            int(config.get_text_config().vocab_size),
            tensor_parallel_size=self.args.tensor_parallel_size,
            max_num_seqs=self.args.batching.max_batch_size,
        )
        self._metrics = EngineMetricsPusher(self.args.model_name, self.args.revision, self.engine_stats)

    async def generate(self, request: GenerateRequest | dict[str, Any]) -> GenerateResult:
        self._metrics.ensure_running()
        result: GenerateResult = await self.generator.generate(_validated(GenerateRequest, request))
        return result

    async def generate_stream(self, request: GenerateRequest | dict[str, Any]) -> AsyncIterator[StreamChunk]:
        self._metrics.ensure_running()
        async for chunk in self.generator.stream(_validated(GenerateRequest, request)):
            yield chunk

    async def generate_batch(self, batch: GenerateBatch | dict[str, Any]) -> GenerateBatchResult:
        self._metrics.ensure_running()
        results = await self.generator.generate_many(_validated(GenerateBatch, batch).requests)
        return GenerateBatchResult(results=results)

    async def generate_batch_stream(
        self, batch: GenerateBatch | dict[str, Any]
    ) -> AsyncIterator[StreamChunk]:
        self._metrics.ensure_running()
        async for chunk in self.generator.stream_many(_validated(GenerateBatch, batch).requests):
            yield chunk

    def _not_served(self, task: str) -> InvalidRequestError:
        return InvalidRequestError(
            f"revision {self.args.revision} of {self.args.model_name} serves generate, not {task}"
        )

    async def classify(self, request: ClassifyRequest | dict[str, Any]) -> ClassifyResult:
        raise self._not_served("classify")

    async def embed(self, request: EmbedRequest | dict[str, Any]) -> EmbedResult:
        raise self._not_served("embed")

    async def score(self, request: ScoreRequest | dict[str, Any]) -> ScoreResult:
        """Teacher-forced log-likelihoods from vLLM's prompt logprobs (the quality gate's perplexity)."""
        from lmops_runtime.engine.encoders import validate_texts

        texts = _validated(ScoreRequest, request).texts
        validate_texts(texts)
        rows = [list(ids) for ids in self.tokenizer(list(texts))["input_ids"]]
        longest = max(len(row) for row in rows)
        if longest > self.max_sequence_length:
            raise InvalidRequestError(
                f"a text has {longest} tokens, more than this model's maximum of {self.max_sequence_length}"
            )
        log_likelihoods, counts = await self.generator.score(rows)
        return ScoreResult(log_likelihoods=log_likelihoods, token_counts=counts)

    def info(self) -> ServerInfo:
        spec = self.args.model
        return ServerInfo(
            model_name=self.args.model_name,
            revision=self.args.revision,
            task=spec.task,
            max_sequence_length=self.max_sequence_length,
            device=self.generator.device,
            dtype=self.generator.dtype,
        )

    def engine_stats(self) -> dict[str, float]:
        """vLLM's engine metrics of this replica (see vllm_stats.EngineStats.snapshot)."""
        return self.generator.stats.snapshot()

    def queue_length(self) -> int:
        """vLLM's ``num_requests_waiting`` at its last engine step (the queue-length autoscaling metric)."""
        return self.generator.stats.num_requests_waiting

    async def check_health(self) -> None:
        self._metrics.ensure_running()
        await self.generator.check_health()

    def close(self) -> None:
        self._metrics.stop()
        self.generator.close()
