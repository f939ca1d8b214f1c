"""Text generation on vLLM: one ``AsyncLLM`` per replica, behind the same request semantics as TextGenerator.

vLLM brings what the transformers engine lacks for production serving: a paged KV cache with continuous
batching of every request (seeded, penalised, biased and logprob requests included), prefix caching and
tensor parallelism. Prompts are tokenized and requests validated by lmops' own code (``prompt_token_ids``,
``resolve_params``), so limits and error messages are the transformers engine's; vLLM gets token ids.

``vllm`` is imported only when an engine is built: it lives in its own environment and image (its compiled
ops pin a torch build that the transformers engine's pins conflict with). Its engine core runs in child
processes that outlive this one unless ``close`` shuts them down, so the replica must call it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from lmops_runtime.config import ModelSpec
from lmops_runtime.engine.coalesce import StreamPacer, coalesce_chunks
from lmops_runtime.engine.fanout import gather_or_cancel, interleave
from lmops_runtime.engine.logprobs import TokenTexts
from lmops_runtime.engine.params import SamplingParams, resolve_params
from lmops_runtime.engine.prompt import prompt_token_ids
from lmops_runtime.engine.text import cut_at_stop
from lmops_runtime.engine.vllm_params import prompt_log_likelihood, sampling_kwargs, steps_from_vllm
from lmops_runtime.engine.vllm_stats import EngineStats, stat_logger_factory
from lmops_runtime.loading import ModelLoadError
from lmops_runtime.protocol import (
    FinishReason,
    GenerateRequest,
    GenerateResult,
    StreamChunk,
    TokenLogprob,
)

log = logging.getLogger("ray.serve")
_request_ids = itertools.count()


@dataclass(frozen=True)
class _Prepared:
    input_ids: list[int]
    params: SamplingParams
    echo_text: str | None


class VllmGenerator:
    """Serves GenerateRequests for one causal LM on a vLLM ``AsyncLLM`` (the handle API of TextGenerator)."""

    def __init__(
        self,
        spec: ModelSpec,
        path: Path,
        tokenizer: Any,
        max_sequence_length: int,
        vocab_size: int,
        *,
        tensor_parallel_size: int = 1,
        max_num_seqs: int = 64,
    ) -> None:
        from vllm import AsyncEngineArgs
        from vllm.platforms import current_platform
        from vllm.v1.engine.async_llm import AsyncLLM

        if spec.quantization != "none":
            raise ModelLoadError(
                "quantization int8 is the transformers engine's dynamic quantization; serve quantized "
                "checkpoints on vLLM through their own format, or use spec.model.engine transformers"
            )
        self._spec = spec
        self._tokenizer = tokenizer
        self._texts = TokenTexts(tokenizer)
        self.max_sequence_length = max_sequence_length
        self._vocab_size = vocab_size
        self.stats = EngineStats()
        self.device = "cpu" if current_platform.is_cpu() else str(current_platform.device_type)
        tensor_parallel = max(1, tensor_parallel_size)
        engine_args = AsyncEngineArgs(
            model=str(path),
            tokenizer=str(path),
            # auto means what it means on the transformers engine: float32 on CPU (vLLM would pick bfloat16).
            dtype="float32" if spec.dtype == "auto" and self.device == "cpu" else spec.dtype,
            max_model_len=max_sequence_length,
            trust_remote_code=spec.trust_remote_code,
            enable_prefix_caching=True,
            tensor_parallel_size=tensor_parallel,
            # Tensor parallel workers go on the bundles of this replica's placement group (see the operator's
            # serve config): Ray, not local processes, so they land on the GPUs Ray granted the replica.
            distributed_executor_backend="ray" if tensor_parallel > 1 else None,
            max_num_seqs=max_num_seqs,
            # CUDA graphs and torch.compile cost minutes at start-up; CPU replicas gain nothing from them.
            enforce_eager=self.device == "cpu",
            seed=0,
            disable_log_stats=False,
        )
        log.info("starting vLLM (tensor parallel %d) for %s", tensor_parallel, path)
        self._engine = AsyncLLM.from_engine_args(engine_args, stat_loggers=[stat_logger_factory(self.stats)])
        self._pacer = StreamPacer()
        self.dtype = str(self._engine.model_config.dtype).removeprefix("torch.")
        self._closed = False

    def prepare(self, request: GenerateRequest) -> _Prepared:
        """Tokenize and validate exactly as the transformers engine does; raises InvalidRequestError."""
        input_ids = prompt_token_ids(self._tokenizer, request, self._vocab_size)
        params = resolve_params(
            request, self._spec.generation, len(input_ids), self.max_sequence_length, self._vocab_size
        )
        sampling_kwargs(params, echo=request.echo)  # rejects what vLLM cannot do before anything runs
        echo_text = None
        if request.echo:
            prompt = request.prompt
            echo_text = prompt if isinstance(prompt, str) else str(self._tokenizer.decode(input_ids))
        return _Prepared(input_ids, params, echo_text)

    async def _outputs(self, prepared: _Prepared, *, stream: bool) -> AsyncGenerator[Any]:
        """vLLM's RequestOutputs for one request: deltas when streaming, else only the final one."""
        from vllm import SamplingParams as VllmSamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        kind = RequestOutputKind.DELTA if stream else RequestOutputKind.FINAL_ONLY
        sampling = VllmSamplingParams(
            **sampling_kwargs(prepared.params, echo=prepared.echo_text is not None), output_kind=kind
        )
        request_id = f"lmops-{os.getpid()}-{next(_request_ids)}"
        prompt = TokensPrompt(prompt_token_ids=prepared.input_ids)
        async for output in self._engine.generate(prompt, sampling, request_id):
            yield output

    async def _final_output(self, prepared: _Prepared) -> Any:
        """vLLM's one RequestOutput for a request that is not streamed."""
        outputs = [output async for output in self._outputs(prepared, stream=False)]
        if not outputs:
            raise RuntimeError("vLLM finished the request without an output")
        return outputs[-1]

    def _convert(self, token_ids: Any, positions: Any, top_n: int | None) -> list[TokenLogprob]:
        return self._texts.convert(steps_from_vllm(list(token_ids), list(positions or []), top_n))

    def _prompt_logprobs(self, prepared: _Prepared, output: Any) -> list[TokenLogprob] | None:
        if prepared.echo_text is None or prepared.params.logprobs is None:
            return None
        return self._convert(prepared.input_ids, output.prompt_logprobs, prepared.params.logprobs)

    def _text(self, tokens: list[int], prepared: _Prepared) -> str:
        """The completion's text as the transformers engine writes it: every token decoded (vLLM leaves out a
        trailing incomplete character), then cut before the first stop sequence."""
        text = str(self._tokenizer.decode(tokens, skip_special_tokens=True))
        return cut_at_stop(text, prepared.params.stop)[0]

    @staticmethod
    def _finish_reason(reason: str | None) -> FinishReason:
        if reason in ("stop", "length"):
            return reason  # type: ignore[return-value]
        raise RuntimeError(f"vLLM ended the request with finish reason {reason!r}")

    async def generate(self, request: GenerateRequest, prepared: _Prepared | None = None) -> GenerateResult:
        """One generation, answered when it finishes."""
        prepared = prepared or self.prepare(request)
        final = await self._final_output(prepared)
        completion = final.outputs[0]
        echo_only = prepared.params.max_new_tokens == 0
        tokens = [] if echo_only else list(completion.token_ids)
        logprobs = None
        if prepared.params.logprobs is not None:
            top_n = prepared.params.logprobs
            logprobs = [] if echo_only else self._convert(tokens, completion.logprobs, top_n)
        return GenerateResult(
            text="" if echo_only else self._text(tokens, prepared),
            prompt_tokens=len(prepared.input_ids),
            completion_tokens=len(tokens),
            finish_reason="length" if echo_only else self._finish_reason(completion.finish_reason),
            logprobs=logprobs,
            prompt_logprobs=self._prompt_logprobs(prepared, final),
            prompt_text=prepared.echo_text,
        )

    def stream(
        self, request: GenerateRequest, prepared: _Prepared | None = None, index: int = 0
    ) -> AsyncIterator[StreamChunk]:
        """``request``'s chunks, those produced within one window of each other merged (``coalesce``)."""
        return coalesce_chunks(
            self._stream(request, prepared, index),
            request.stream_interval_ms / 1000,
            self._pacer,
            request.stream_chunks_per_s,
        )

    async def _stream(
        self, request: GenerateRequest, prepared: _Prepared | None, index: int
    ) -> AsyncGenerator[StreamChunk]:
        """Text deltas as vLLM detokenizes them (it holds back text that may begin a stop sequence)."""
        prepared = prepared or self.prepare(request)
        top_n = prepared.params.logprobs
        echo_only = prepared.params.max_new_tokens == 0
        tokens: list[int] = []
        sent = ""
        reason: FinishReason = "length"
        first = True
        async for output in self._outputs(prepared, stream=True):
            if first and prepared.echo_text is not None:
                yield StreamChunk(
                    text="",
                    index=index,
                    prompt_text=prepared.echo_text,
                    prompt_logprobs=self._prompt_logprobs(prepared, output),
                )
            first = False
            completion = output.outputs[0]
            if echo_only:
                continue
            tokens += completion.token_ids
            logprobs = None
            if top_n is not None and completion.token_ids:
                logprobs = self._convert(completion.token_ids, completion.logprobs, top_n)
            if completion.finish_reason is not None:
                reason = self._finish_reason(completion.finish_reason)
            if completion.text or logprobs:
                sent += completion.text
                yield StreamChunk(text=completion.text, index=index, logprobs=logprobs)
        # What vLLM held back at the end (a trailing incomplete character), so the stream adds up to the
        # unary text.
        full = "" if echo_only else self._text(tokens, prepared)
        yield StreamChunk(
            text=full[len(sent) :] if full.startswith(sent) else "",
            index=index,
            finish_reason=reason,
            prompt_tokens=len(prepared.input_ids),
            completion_tokens=len(tokens),
            logprobs=[] if top_n is not None else None,
        )

    async def generate_many(self, requests: list[GenerateRequest]) -> list[GenerateResult]:
        """Several generations at once (vLLM batches them); all validated first, the first failure wins."""
        prepared = [self.prepare(request) for request in requests]
        return await gather_or_cancel([self.generate(r, p) for r, p in zip(requests, prepared, strict=True)])

    def stream_many(self, requests: list[GenerateRequest]) -> AsyncIterator[StreamChunk]:
        """The chunks of several streamed generations as they come, each tagged with its request's index."""
        prepared = [self.prepare(request) for request in requests]
        return interleave(
            [partial(self.stream, r, p, i) for i, (r, p) in enumerate(zip(requests, prepared, strict=True))]
        )

    async def score(self, token_rows: list[list[int]]) -> tuple[list[float], list[int]]:
        """Teacher-forced log-likelihood of each row (vLLM's prompt logprobs), for perplexity."""

        async def one(ids: list[int]) -> tuple[float, int]:
            if len(ids) < 2:
                return 0.0, max(len(ids) - 1, 0)
            params = SamplingParams("greedy", 1, logprobs=0)
            prepared = _Prepared(ids, params, echo_text="")
            final = await self._final_output(prepared)
            return prompt_log_likelihood(steps_from_vllm(ids, list(final.prompt_logprobs or []), 0))

        results = await asyncio.gather(*(one(ids) for ids in token_rows))
        return [value for value, _ in results], [count for _, count in results]

    async def check_health(self) -> None:
        """Raises when the engine core died (vLLM's own check); the replica is then restarted by Serve."""
        await self._engine.check_health()

    def close(self) -> None:
        """Shut the engine core processes down; they ignore SIGTERM and would outlive the replica."""
        if self._closed:
            return
        self._closed = True
        self._engine.shutdown()
